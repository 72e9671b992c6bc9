"""The function's contract beyond a prediction (docs/function.md): GET /health in the handler and the
local gateway, the hint on a form upload's 415, the sample events under events/, one log line per
request from `make serve`, and lambda/client.py on a folder."""

import io
import json

from PIL import Image

from pipeline import serve
from serving import handler as handler_module
from serving import metrics
from support import BOUNDARY, EVENTS, ROOT, event, http_api, multipart


# ------------------------------------------------------------------ without a model
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


def test_only_get_health_is_the_health_route():
    assert handler_module.is_health(event("health.json"))
    assert handler_module.is_health({"httpMethod": "GET", "path": "/health"})  # a REST API's (payload 1.0)
    assert not handler_module.is_health(http_api(b"", None, method="POST", path="/health"))
    assert not handler_module.is_health(http_api(b"", None, method="GET", path="/predict"))
    assert not handler_module.is_health({"url": "https://example.com/health"})


def test_the_sample_events_are_what_the_handler_accepts():
    url = handler_module.parse_event(event("predict-url.json"))
    assert url.kind == "http_api" and url.url.startswith("https://") and url.url.endswith(".jpg")
    photo = handler_module.parse_event(event("predict-photo.json"))
    assert photo.kind == "http_api" and Image.open(io.BytesIO(photo.image)).format == "JPEG"
    assert all(p.stat().st_size < 8_000 for p in EVENTS.glob("*.json"))  # samples, not binaries in git


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
