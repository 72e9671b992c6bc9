"""lambda/client.py against a stand-in function on 127.0.0.1 (an in-process HTTP server that answers as the
handler does): what it sends, how it reads answers and refusals, and a folder's CSV (issue 34)."""

import base64
import contextlib
import csv
import http.server
import importlib.util
import io
import json
import threading

import pytest

from support import ROOT, SiteHandler

spec = importlib.util.spec_from_file_location("client", ROOT / "lambda" / "client.py")
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)

ANSWER = {
    "top": "hat",
    "probability": 0.875,
    "predictions": [{"label": "hat", "probability": 0.875}, {"label": "dress", "probability": 0.125}],
    "model": {"variant": "full_int8"},
    "inference_ms": 1.5,
}


class Function(SiteHandler):
    """Answers a photo of b"hat" with ANSWER; b"bad" with API Gateway's 400 and the handler's error; b"invoke" as
    the Invoke API does (HTTP 200, the handler's error result as the body); b"html" with a proxy's HTML page."""

    received: list = []

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Function.received.append(payload)
        photo = base64.b64decode(payload["image"]) if "image" in payload else b"hat"
        if photo == b"bad":
            return self.answer(400, json.dumps({"error": "not an image"}).encode())
        if photo == b"invoke":
            error = {"statusCode": 413, "error": "payload too large", "hint": "send a URL"}
            return self.answer(200, json.dumps(error).encode())
        if photo == b"html":
            return self.answer(502, b"<html>Bad Gateway</html>")
        self.answer(200, json.dumps(ANSWER).encode())


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Function)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    Function.received = []
    try:
        yield f"http://127.0.0.1:{server.server_port}/predict"
    finally:
        server.shutdown()
        server.server_close()


def test_a_photo_is_sent_as_base64_and_its_answer_printed(endpoint, tmp_path, capsys):
    photo = tmp_path / "cap.jpg"
    photo.write_bytes(b"hat")
    client.main([str(photo), "--endpoint", endpoint])
    assert Function.received == [{"image": "aGF0"}]  # base64 of b"hat", by hand
    assert capsys.readouterr().out.splitlines() == [
        "hat         0.8750",
        "dress       0.1250",
        "-> hat (full_int8, 1.5 ms)",
    ]


def test_a_url_is_sent_as_a_url(endpoint, capsys):
    client.main(["https://example.com/cap.jpg", "--endpoint", endpoint])
    assert Function.received == [{"url": "https://example.com/cap.jpg"}]


@pytest.mark.parametrize(
    ("photo", "message"),
    [
        (b"bad", "400: not an image"),  # API Gateway: the status is the HTTP one
        (b"invoke", "413: payload too large (send a URL)"),  # Invoke API: HTTP 200, the status in the body
        (b"html", "502: the answer is not JSON: <html>Bad Gateway</html>"),
    ],
)
def test_a_refusal_is_its_status_and_reason(endpoint, photo, message):
    # Fails if an error answer is returned as an answer, or the Invoke API's statusCode is not read.
    with pytest.raises(client.Refused) as refused:
        client.ask(endpoint, {"image": base64.b64encode(photo).decode()})
    assert str(refused.value) == message


def test_a_refused_photo_ends_the_command_with_one_line(endpoint, tmp_path):
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"bad")
    with pytest.raises(SystemExit, match="^error 400: not an image$"):
        client.main([str(photo), "--endpoint", endpoint])


def test_a_folder_is_one_csv_row_a_photo_refusals_included(endpoint, tmp_path):
    # Photos by name; other files and subfolders left out; a refused photo is a row with its reason.
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "c.jpg").write_bytes(b"hat")
    (folder / "b.PNG").write_bytes(b"bad")
    (folder / "a.jpg").write_bytes(b"hat")
    (folder / "notes.txt").write_text("not a photo")
    out = tmp_path / "answers.csv"
    client.main([str(folder), "--endpoint", endpoint, "--out", str(out)])
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows == [
        {"path": str(folder / "a.jpg"), "class": "hat", "probability": "0.875", "error": ""},
        {"path": str(folder / "b.PNG"), "class": "", "probability": "", "error": "400: not an image"},
    ]


def test_a_folder_without_photos_and_out_without_a_folder_are_refused(endpoint, tmp_path):
    with pytest.raises(SystemExit, match="error: no photos"):
        client.main([str(tmp_path), "--endpoint", endpoint])
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"hat")
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        client.main([str(photo), "--endpoint", endpoint, "--out", str(tmp_path / "x.csv")])
    assert Function.received == []  # refused before asking
