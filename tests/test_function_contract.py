"""The function's contract beyond a prediction (docs/function.md): GET /health in the handler and the
local gateway, the hint on a form upload's 415, the sample events under events/, one log line per
request from `make serve`, and lambda/client.py on a folder."""

import base64
import csv
import http.server
import importlib.util
import io
import json
import threading

import pytest
import requests
from PIL import Image

from conftest import LABELS, ROOT
from pipeline import gateway, serve
from serving import handler as handler_module
from serving import metrics

EVENTS = ROOT / "events"
BOUNDARY = "------------------------d74496d66958873e"


def multipart(data: bytes) -> bytes:
    """What `curl -F file=@photo.jpg` sends."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
    return head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def http_api(body: bytes, content_type: "str | None", method: str = "POST", path: str = "/predict") -> dict:
    return {
        "version": "2.0",
        "rawPath": path,
        "headers": {"content-type": content_type} if content_type else {},
        "requestContext": {"http": {"method": method, "path": path}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


# ------------------------------------------------------------------ without a model
@pytest.mark.fast
def test_a_form_upload_gets_the_hint_and_an_image_does_not():
    photo = (ROOT / "lambda/serving/__init__.py").read_bytes()  # any bytes: the hint reads the form, not them
    parse = handler_module.parse_event
    curl_f = parse(http_api(multipart(photo), f"multipart/form-data; boundary={BOUNDARY}"))
    curl_f_as_octets = parse(http_api(multipart(photo), "application/octet-stream"))  # the body gives it away
    curl_d = parse(http_api(photo, "application/x-www-form-urlencoded"))
    for request in (curl_f, curl_f_as_octets, curl_d):
        assert "--data-binary @photo.jpg" in handler_module.upload_hint(request)
    assert "multipart" in handler_module.upload_hint(curl_f_as_octets)
    assert "curl -d" in handler_module.upload_hint(curl_d)
    assert handler_module.upload_hint(parse(http_api(photo, "image/jpeg"))) is None
    assert handler_module.upload_hint(parse(http_api(b'{"url": "https://example.com/a.jpg"}', None))) is None


@pytest.mark.fast
def test_only_get_health_is_the_health_route():
    assert handler_module.is_health(event("health.json"))
    assert handler_module.is_health({"httpMethod": "GET", "path": "/health"})  # a REST API's (payload 1.0)
    assert not handler_module.is_health(http_api(b"", None, method="POST", path="/health"))
    assert not handler_module.is_health(http_api(b"", None, method="GET", path="/predict"))
    assert not handler_module.is_health({"url": "https://example.com/health"})


@pytest.mark.fast
def test_the_sample_events_are_what_the_handler_accepts():
    url = handler_module.parse_event(event("predict-url.json"))
    assert url.kind == "http_api" and url.url.startswith("https://") and url.url.endswith(".jpg")
    photo = handler_module.parse_event(event("predict-photo.json"))
    assert photo.kind == "http_api" and Image.open(io.BytesIO(photo.image)).format == "JPEG"
    assert all(p.stat().st_size < 8_000 for p in EVENTS.glob("*.json"))  # samples, not binaries in git


@pytest.mark.fast
def test_serve_prints_one_line_a_request_and_passes_the_rest():
    log = {"request_id": "r", "top": "hat", "probability": 0.91234, "inference_ms": 30.5, "event": "http_api"}
    emf = json.dumps(metrics.document({**log, "status": 200, "total_ms": 31.0}, None, "full_int8"))
    emulated = [
        "START RequestId: r Version: $LATEST",
        "07 Dec 2026 18:05:20,469 [INFO] (rapid) Starting runtime without AWS_ACCESS_KEY_ID, Expected?: false",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        emf,
        "END RequestId: r",
        "REPORT RequestId: r\tDuration: 24.00 ms\tBilled Duration: 25 ms",
        "07 Dec 2026 18:07:19,078 [PANIC] (rapid) listen tcp 127.0.0.1:18242: bind: address already in use",
        json.dumps({"event": "http_api", "route": "health", "status": 200, "total_ms": 1.5}),
    ]
    stream = io.BytesIO("".join(f"{line}\n" for line in emulated).encode())
    out = io.StringIO()
    serve.pass_output(stream, out, verbose=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith("200 http_api: hat 0.912, model 30.5 ms, total 31.0 ms")
    assert lines[1] == emulated[6]  # an error is never filtered
    assert lines[2].endswith("200 health, total 1.5 ms")
    verbose = io.StringIO()
    serve.pass_output(io.BytesIO(stream.getvalue()), verbose, verbose=True)
    assert verbose.getvalue().splitlines() == emulated


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
