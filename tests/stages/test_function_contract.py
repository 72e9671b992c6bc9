"""The function's contract beyond a prediction (docs/function.md): GET /health in the handler and the
local gateway, the hint on a form upload's 415, the sample events under events/, one log line per
request from `make serve`, and lambda/client.py on a folder."""

import csv
import http.server
import importlib.util
import json
import threading

import pytest
import requests

from pipeline import gateway
from serving import handler as handler_module
from support import BOUNDARY, LABELS, ROOT, event, http_api, multipart


@pytest.fixture
def gateway_to(request):
    """The local gateway in front of a stand-in emulator that records each event and answers `answer`."""
    seen, answer = [], request.param if hasattr(request, "param") else None

    class Emulator(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps(answer or {"statusCode": 200, "body": json.dumps({"status": "ok"})}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Emulator)]
    emulator_url = f"http://127.0.0.1:{servers[0].server_port}"
    servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", 0), gateway.make_gateway(emulator_url)))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{servers[1].server_port}", seen
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_gateway_routes_get_health_to_the_function(gateway_to):
    base, seen = gateway_to
    answer = requests.get(base + "/health", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert len(seen) == 1 and handler_module.is_health(seen[0])  # the event the handler takes for a health check
    assert requests.get(base + "/predict", timeout=10).status_code == 404  # no other GET reaches the function
    assert requests.get(base + "/", timeout=10).status_code == 404
    assert len(seen) == 1


# ------------------------------------------------------------------ with the small run's model
def test_health_answers_with_the_model_and_logs_one_line_without_metrics(handler, capsys):
    response = handler.lambda_handler(event("health.json"))
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["status"] == "ok" and body["model"]["variant"] == "full_int8" and len(body["model"]["sha256"]) == 64
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["route"] == "health" and "_aws" not in line  # not counted by the canary's alarms


def test_health_says_unavailable_when_the_model_does_not_load(handler, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(handler, "MODEL_PATH", tmp_path / "missing.tflite")
    handler.model.cache_clear()
    try:
        response = handler.lambda_handler(event("health.json"))
    finally:
        handler.model.cache_clear()
    assert response["statusCode"] == 503 and json.loads(response["body"])["status"] == "unavailable"


def test_the_photo_event_gets_a_prediction_and_one_log_line(handler, capsys):
    response = handler.lambda_handler(event("predict-photo.json"))
    assert response["statusCode"] == 200 and json.loads(response["body"])["top"] in LABELS
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_a_multipart_upload_is_a_415_with_the_hint(handler, photo):
    response = handler.lambda_handler(http_api(multipart(photo), f"multipart/form-data; boundary={BOUNDARY}"))
    body = json.loads(response["body"])
    assert response["statusCode"] == 415 and "--data-binary @photo.jpg" in body["hint"]
    # The same photo sent right is answered: the hint is no guess about a body that was fine.
    assert handler.lambda_handler(http_api(photo, "image/jpeg"))["statusCode"] == 200


def load_client():
    spec = importlib.util.spec_from_file_location("client", ROOT / "lambda/client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_client_classifies_a_folder_into_a_csv(handler, verified_photos, tmp_path, monkeypatch, capsys):
    """lambda/client.py DIR against the handler in this process (as the Invoke API would answer)."""
    client = load_client()

    class Answer:
        def __init__(self, result):
            self.result, self.status_code = result, result.get("statusCode", 200)

        def json(self):
            return self.result

    monkeypatch.setattr(client.requests, "post", lambda url, json, timeout: Answer(handler.lambda_handler(json)))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (data, _) in verified_photos.items():
        (folder / name).write_bytes(data)
    (folder / "not-a-photo.jpg").write_bytes(b"plain text")
    (folder / "notes.txt").write_text("not a photo's suffix: skipped")
    client.main([str(folder), "--out", str(tmp_path / "answers.csv")])
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = {row["path"].rsplit("/", 1)[1]: row for row in csv.DictReader(f)}
    assert set(rows) == {*verified_photos, "not-a-photo.jpg"}
    for name, (_, expected) in verified_photos.items():
        assert rows[name]["class"] == expected["predicted"] and rows[name]["error"] == ""
        assert float(rows[name]["probability"]) == pytest.approx(
            float(expected["p_" + expected["predicted"]]), abs=2e-5
        )
    assert rows["not-a-photo.jpg"]["class"] == "" and rows["not-a-photo.jpg"]["error"].startswith("415: not an image")
    assert "3 photos, 1 refused" in capsys.readouterr().err


@pytest.fixture
def verified_photos(small_run) -> dict:
    """Two test photos and the verify stage's answer for each with full_int8 (what the handler serves)."""
    with open(small_run / "artifacts/verify/predictions.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["model"] == "full_int8"][:2]
    return {f"{i}-{row['path'].rsplit('/', 1)[1]}": (open(row["path"], "rb").read(), row) for i, row in enumerate(rows)}
