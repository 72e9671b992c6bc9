"""The Lambda handler in-process, on a real TFLite model from the small pipeline run and real photos."""

import base64
import contextlib
import http.server
import importlib
import io
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

VARIANT = "full_int8"


@pytest.fixture(scope="module")
def handler(small_run):
    os.environ["MODEL_PATH"] = str(small_run / "artifacts/tflite" / f"{VARIANT}.tflite")
    return importlib.import_module("serving.handler")


@pytest.fixture(scope="module")
def verified(small_run):
    """The verify stage's answers for the test photos, for the variant the handler serves."""
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    return predictions[predictions["model"] == VARIANT].set_index("path")


class Site(http.server.BaseHTTPRequestHandler):
    """Local test web server: /photo (a real JPEG), /big, /slow, /to-loopback, /loop, /missing."""

    photo = b""

    def do_GET(self):
        port = self.server.server_port
        if self.path == "/photo":
            return self.answer(200, self.photo)
        if self.path == "/big":
            return self.answer(200, b"\0" * (11 * 1024 * 1024))
        if self.path == "/slow":
            time.sleep(2)
            return self.answer(200, self.photo)
        if self.path == "/to-loopback":
            return self.answer(302, b"", {"Location": f"http://127.0.0.1:{port}/photo"})
        if self.path == "/loop":
            return self.answer(302, b"", {"Location": "/loop"})
        self.answer(404, b"no")

    def answer(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(dataset_dir):
    Site.photo = next((dataset_dir / "test" / "pants").iterdir()).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"localhost:{server.server_port}", server.server_port
    server.shutdown()


@pytest.fixture
def allow_localhost(handler, monkeypatch):
    monkeypatch.setattr(handler, "ALLOWED_HOSTS", frozenset({"localhost"}))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encode(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def http_api(body: bytes, content_type="image/jpeg", base64_encoded=True) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /predict",
        "rawPath": "/predict",
        "headers": {"content-type": content_type},
        "requestContext": {"http": {"method": "POST"}},
        "body": b64(body) if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def rest_api(body: bytes, content_type="application/json") -> dict:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def check_matches_verify(answer: dict, path: str, verified) -> None:
    row = verified.loc[path]
    assert answer["top"] == row["predicted"]
    for p in answer["predictions"]:
        assert p["probability"] == pytest.approx(row[f"p_{p['label']}"], abs=2e-5)


def test_direct_image_matches_the_verify_stage(handler, verified, capsys):
    for path in list(verified.index)[::37]:
        with open(path, "rb") as f:
            answer = handler.lambda_handler({"image": b64(f.read())})
        check_matches_verify(answer, path, verified)
    assert [p["label"] for p in answer["predictions"]] != []
    probs = [p["probability"] for p in answer["predictions"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 10 and sum(probs) == pytest.approx(1, abs=1e-4)
    assert answer["model"]["variant"] == VARIANT and len(answer["model"]["sha256"]) == 64
    assert answer["inference_ms"] > 0
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert log["status"] == 200 and log["event"] == "direct" and log["top"] == answer["top"]


def test_direct_url(handler, site, allow_localhost, verified, dataset_dir):
    host, _ = site
    answer = handler.lambda_handler({"url": f"http://{host}/photo"})
    path = str(next((dataset_dir / "test" / "pants").iterdir()))
    if path in verified.index:
        check_matches_verify(answer, path, verified)
    assert answer == {**handler.lambda_handler({"image": b64(Site.photo)}), "inference_ms": answer["inference_ms"]}


def test_api_gateway_events(handler, site, allow_localhost):
    expected = handler.lambda_handler({"image": b64(Site.photo)})["top"]
    host, _ = site
    events = [
        http_api(Site.photo),  # raw image body, base64-encoded by API Gateway
        http_api(json.dumps({"image": b64(Site.photo)}).encode(), "application/json", base64_encoded=False),
        http_api(json.dumps({"url": f"http://{host}/photo"}).encode(), "application/json"),
        rest_api(json.dumps({"image": b64(Site.photo)}).encode()),
        {**rest_api(b""), "body": b64(Site.photo), "isBase64Encoded": True, "headers": {"Content-Type": "image/jpeg"}},
    ]
    for event in events:
        response = handler.lambda_handler(event)
        assert response["statusCode"] == 200 and response["headers"]["Content-Type"] == "application/json"
        assert json.loads(response["body"])["top"] == expected


@pytest.mark.parametrize(
    ("event", "status", "message"),
    [
        (http_api(b"{not json", "application/json", base64_encoded=False), 400, "not valid JSON"),
        (http_api(b"", "image/jpeg"), 400, "empty body"),
        ({}, 400, "exactly one of 'url'"),
        ({"url": "http://a", "image": "AAAA"}, 400, "exactly one of 'url'"),
        ({"url": 5}, 400, "'url' must be a non-empty string"),
        ({"image": ["x"]}, 400, "'image' must be a non-empty base64 string"),
        ({"image": "***"}, 400, "not valid base64"),
        ("just a string", 400, "must be a JSON object"),
        ({"image": b64(b"GIF89a but not really")}, 415, "not an image"),
        ({"image": b64(b"plain text")}, 415, "not an image"),
        ({"image": b64(encode(Image.new("L", (10_000, 5_000))))}, 413, "image too large"),
        (http_api(b"\xff" * (7 * 1024 * 1024)), 413, "payload limit"),
        ({"url": "ftp://example.com/x.jpg"}, 400, "only http(s) URLs"),
        ({"url": "file:///etc/passwd"}, 400, "only http(s) URLs"),
        ({"url": "http://"}, 400, "no host"),
    ],
)
def test_bad_input_is_a_4xx_with_the_reason(handler, event, status, message):
    response = handler.lambda_handler(event)
    body = json.loads(response["body"]) if "statusCode" in response and "body" in response else response
    assert response["statusCode"] == status and message in body["error"]


def test_truncated_photo(handler):
    response = handler.lambda_handler({"image": b64(Site.photo[: len(Site.photo) // 2])})
    assert response["statusCode"] == 422 and "cannot decode" in response["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/photo",
        "http://2130706433:{port}/photo",  # 127.0.0.1 as one decimal number
        "http://0x7f000001:{port}/photo",  # ... in hex
        "http://127.1:{port}/photo",
        "http://[::1]:{port}/photo",
        "http://[::ffff:127.0.0.1]:{port}/photo",
        "http://169.254.169.254/latest/meta-data/",  # the instance metadata service
        "http://10.1.2.3/x.jpg",
        "http://192.168.0.1/x.jpg",
        "http://[fd00::1]/x.jpg",
        "http://224.0.0.1/x.jpg",
        "http://0.0.0.0:{port}/photo",
        "http://{host}/to-loopback",  # an allowed host redirecting to loopback
    ],
)
def test_ssrf_is_refused(handler, site, allow_localhost, url):
    host, port = site
    response = handler.lambda_handler({"url": url.format(host=host, port=port)})
    assert response["statusCode"] == 403 and "non-public address" in response["error"]


def test_url_limits(handler, site, allow_localhost, monkeypatch):
    host, _ = site
    cases = {"/big": (413, "larger than"), "/loop": (422, "redirects"), "/missing": (422, "HTTP 404")}
    for path, (status, message) in cases.items():
        response = handler.lambda_handler({"url": f"http://{host}{path}"})
        assert response["statusCode"] == status and message in response["error"], response
    monkeypatch.setattr(handler, "FETCH_TIMEOUT_S", 0.5)
    response = handler.lambda_handler({"url": f"http://{host}/slow"})
    assert response["statusCode"] == 408 and "longer than 0.5 s" in response["error"]
    assert handler.lambda_handler({"url": "http://no-such-host.invalid/x.jpg"})["statusCode"] == 400


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_unusual_valid_images_are_answered(handler, mode):
    photo = Image.open(io.BytesIO(Site.photo))
    img = photo.convert("L").convert(mode) if mode in ("I;16", "1") else photo.convert(mode)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
    data = encode(img, "JPEG" if mode in ("CMYK", "L") else "PNG")
    assert handler.lambda_handler({"image": b64(data)})["top"]


def test_exif_rotated_and_animated_images(handler):
    photo = Image.open(io.BytesIO(Site.photo))
    exif = Image.Exif()
    exif[0x0112] = 8
    assert handler.lambda_handler({"image": b64(encode(photo, "JPEG", exif=exif.tobytes()))})["top"]
    frames = [photo.convert("P"), photo.convert("P").rotate(90)]
    assert handler.lambda_handler({"image": b64(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))})[
        "top"
    ]
