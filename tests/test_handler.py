"""The Lambda handler in-process, on a real TFLite model from the small pipeline run and real photos."""

import base64
import http.server
import io
import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SiteHandler

VARIANT = "full_int8"


@pytest.fixture(scope="module")
def verified(small_run):
    """The verify stage's answers for the test photos, for the variant the handler serves."""
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    return predictions[predictions["model"] == VARIANT].set_index("path")


class Site(SiteHandler):
    """Local test web server: /photo (a real JPEG), /big, /slow, /to-loopback, /loop, /missing, /to-bad-url,
    /to-cafe (a redirect to a non-ASCII path), /café.jpg (percent-encoded)."""

    photo = b""

    def do_GET(self):
        port = self.server.server_port
        if self.path in ("/photo", "/caf%C3%A9.jpg"):
            return self.answer(200, self.photo)
        if self.path == "/big":
            return self.answer(200, b"\0" * (11 * 1024 * 1024))
        if self.path == "/slow":
            time.sleep(2)
            return self.answer(200, self.photo)
        if self.path == "/to-loopback":
            return self.answer(302, b"", {"Location": f"http://localhost:{port}/photo"})
        if self.path == "/to-bad-url":
            return self.answer(302, b"", {"Location": "http://["})
        if self.path == "/to-cafe":
            return self.answer(302, b"", {"Location": "/caf\xe9.jpg"})
        if self.path == "/loop":
            return self.answer(302, b"", {"Location": "/loop"})
        self.answer(404, b"no")


@pytest.fixture(scope="module")
def site(dataset_dir):
    Site.photo = next((dataset_dir / "test" / "pants").iterdir()).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}", server.server_port
    server.shutdown()


@pytest.fixture
def allow_site(handler, site, monkeypatch):
    """The local site's host and port exempt from the SSRF and port checks, as `make serve --allow-hosts` does."""
    monkeypatch.setattr(handler, "ALLOWED_HOSTS", frozenset({"127.0.0.1"}))
    monkeypatch.setattr(handler, "ALLOWED_PORTS", frozenset({site[1]}))


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


def test_direct_url(handler, site, allow_site, verified, dataset_dir):
    host, _ = site
    answer = handler.lambda_handler({"url": f"http://{host}/photo"})
    path = str(next((dataset_dir / "test" / "pants").iterdir()))
    if path in verified.index:
        check_matches_verify(answer, path, verified)
    assert answer == {**handler.lambda_handler({"image": b64(Site.photo)}), "inference_ms": answer["inference_ms"]}


def test_api_gateway_events(handler, site, allow_site):
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
        "http://[64:ff9b::7f00:1]:{port}/photo",  # NAT64 of 127.0.0.1
        "http://[2002:7f00:1::]:{port}/photo",  # 6to4 of 127.0.0.1
        "http://[2001:0:a00:1::80ff:fffe]:{port}/photo",  # Teredo: client 127.0.0.1
        "http://{host}/to-loopback",  # an allowed host redirecting to loopback
    ],
)
def test_ssrf_is_refused(handler, site, monkeypatch, url):
    host, port = site
    monkeypatch.setattr(handler, "ALLOWED_PORTS", frozenset({80, port}))
    if "to-loopback" in url:  # an allowed host redirecting to loopback
        monkeypatch.setattr(handler, "ALLOWED_HOSTS", frozenset({"127.0.0.1"}))
    response = handler.lambda_handler({"url": url.format(host=host, port=port)})
    assert response["statusCode"] == 403 and "non-public address" in response["error"]


def test_url_limits(handler, site, allow_site, monkeypatch):
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


def status_and_body(response: dict) -> tuple[int, dict]:
    """(status, JSON body) of any answer: direct (a dict, with statusCode unless 200) or API Gateway proxy."""
    if isinstance(response.get("body"), str):
        return response["statusCode"], json.loads(response["body"])
    return response.get("statusCode", 200), response


def test_invalid_ipv6_url_is_400(handler):
    status, body = status_and_body(handler.lambda_handler({"url": "http://[/"}))
    assert status == 400 and "invalid URL" in body["error"]


def test_redirect_to_an_invalid_url_is_422(handler, site, allow_site):
    status, body = status_and_body(handler.lambda_handler({"url": f"http://{site[0]}/to-bad-url"}))
    assert status == 422 and "invalid URL" in body["error"]


def test_non_ascii_path_directly_and_through_a_redirect(handler, site, allow_site):
    expected = handler.lambda_handler({"image": b64(Site.photo)})["top"]
    assert handler.lambda_handler({"url": f"http://{site[0]}/café.jpg"})["top"] == expected
    assert handler.lambda_handler({"url": f"http://{site[0]}/to-cafe"})["top"] == expected


def test_ports_other_than_80_and_443_are_refused_before_connecting(handler, site):
    status, body = status_and_body(handler.lambda_handler({"url": f"http://{site[0]}/photo"}))
    assert status == 400 and "only ports 80, 443" in body["error"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json
        b'{"url": ' + b"7" * 5_000 + b"}",  # an integer over Python's 4,300-digit limit: ValueError
        b'{"url": "\\ud800"}',  # a lone surrogate in a JSON escape
    ],
    ids=["deeply-nested", "5000-digit-integer", "lone-surrogate"],
)
def test_hostile_json_bodies_are_400(handler, body):
    status, answer = status_and_body(handler.lambda_handler(http_api(body, "application/json")))
    assert status == 400, answer


def test_a_text_body_with_a_lone_surrogate_is_400(handler):
    event = {**rest_api(b"{}"), "body": '{"url": "x\ud800"}'}
    status, answer = status_and_body(handler.lambda_handler(event))
    assert status == 400 and "UTF-8" in answer["error"]


@pytest.mark.parametrize(
    "data",
    [
        b"P5 1x 1 255\n\0",  # a 14-byte PGM header Pillow half-recognises
        b"\x01\xda\x01\x01\x00\x03" + b"\xff" * 506,  # SGI
        b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40,  # JPEG 2000
        b"\xffO\xffQ" + b"\x00" * 40,  # a JPEG 2000 codestream
        b"II*\x00\x08\x00\x00\x00",  # TIFF, left out of the accepted formats
    ],
    ids=["pgm", "sgi", "jp2", "j2k", "tiff"],
)
def test_formats_outside_the_allow_list_are_415(handler, data):
    status, body = status_and_body(handler.lambda_handler({"image": b64(data)}))
    assert status == 415 and "accepted: JPEG, PNG, WEBP, GIF, BMP" in body["error"]


@pytest.mark.parametrize(
    "event",
    [
        {**http_api(b"{}"), "headers": ["content-type", "application/json"]},
        {**http_api(b"{}"), "headers": "content-type: image/jpeg"},
        {**http_api(b"{}"), "headers": {1: 2, None: "x"}, "body": b64(b"x")},
        {**http_api(b"{}"), "body": 12345},
        {**rest_api(b"{}"), "body": {"url": "http://example.com"}},
        {**rest_api(b"{}"), "body": ["x"]},
    ],
    ids=["headers-list", "headers-string", "headers-odd-keys", "body-int", "body-dict", "body-list"],
)
def test_hand_made_events_of_the_wrong_shape_are_4xx(handler, event):
    status, body = status_and_body(handler.lambda_handler(event))
    assert 400 <= status < 500 and body["error"], body


def test_direct_image_over_the_payload_limit_is_413(handler):
    data = Site.photo * (7 * 1024 * 1024 // len(Site.photo) + 1)
    status, body = status_and_body(handler.lambda_handler({"image": b64(data)}))
    assert status == 413 and "payload limit" in body["error"]


class Context:
    aws_request_id = "req-1234"


def test_own_fault_is_a_500_json_answer_logged_with_the_request_id(handler, tmp_path, monkeypatch, capsys):
    corrupt = tmp_path / "model.tflite"
    corrupt.write_bytes(b"TFL3" + b"\0" * 1000)  # a model file cut short: the function's fault, not the client's
    monkeypatch.setattr(handler, "MODEL_PATH", corrupt)
    handler.model.cache_clear()
    try:
        direct = handler.lambda_handler({"image": b64(Site.photo)}, Context())
        proxy = handler.lambda_handler(http_api(Site.photo), Context())
    finally:
        handler.model.cache_clear()
    assert direct == {"statusCode": 500, "error": "internal error", "request_id": "req-1234"}
    assert proxy["statusCode"] == 500 and json.loads(proxy["body"])["request_id"] == "req-1234"
    logs = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    for log in logs:
        assert log["status"] == 500 and log["request_id"] == "req-1234" and log["error"] and log["traceback"]
