"""Property-based fuzzing (hypothesis) of the function's contract: whatever a client sends - events, bodies,
headers, URLs, bytes seeded with real photos - the answer is JSON with status 200 or 4xx, in process and
through the local gateway and the real runtime interface emulator, and the process stays up. A real photo in
an accepted format, sent as it is, must get a 200.

Example counts are bounded so the file runs in well under a minute once the model exists; no example
database is written (database=None), so each run explores fresh examples.
"""

import base64
import http.client
import io
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline import serve
from support import LABELS, ROOT, SHARED_DATASET, accepted_formats

VARIANT = "full_int8"
RIE = ROOT / ".cache" / "aws-lambda-rie-x86_64"
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Without the real photos every test here fails on the dataset_dir fixture, as the rest of the suite does.
pytestmark = pytest.mark.usefixtures("dataset_dir")


def photo_seeds() -> tuple[list[bytes], list[bytes]]:
    """A real photo in every accepted format, and in some refused formats (none without the data set)."""
    folder = SHARED_DATASET / "test" / "pants"
    if not folder.is_dir():
        return [], []
    photo = Image.open(min(folder.iterdir())).convert("RGB").resize((40, 48))
    encoded = {}
    for fmt, mode in [("PNG", "RGBA"), ("GIF", "P"), ("TIFF", "RGB"), ("PPM", "L")]:  # also other modes
        buffer = io.BytesIO()
        photo.convert(mode).save(buffer, format=fmt)
        encoded[fmt] = buffer.getvalue()
    refused = [encoded["TIFF"], encoded["PPM"], b"P5 1x 1 255\n\0", b"\x01\xda\x01\x01\x00\x03"]
    refused.append(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
    return [*accepted_formats(photo).values(), encoded["PNG"], encoded["GIF"]], refused


ACCEPTED, REFUSED = photo_seeds()
SEEDS = ACCEPTED + REFUSED


def mutate(seed: bytes, cut: int, junk: bytes, at: int) -> bytes:
    """A photo cut short, with junk overwriting part of it, or whole."""
    data = bytearray(seed[: max(cut, 1)])
    at = at % max(len(data), 1)
    data[at : at + len(junk)] = junk
    return bytes(data)


image_bytes = st.one_of(
    st.sampled_from(SEEDS),
    st.builds(mutate, st.sampled_from(SEEDS), st.integers(0, 5000), st.binary(max_size=16), st.integers(0, 5000)),
    st.binary(max_size=512),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Hosts that are never fetched from outside this machine: non-public spellings, bad syntax, unresolvable names.
hosts = st.sampled_from(
    [
        "127.0.0.1",
        "127.1",
        "0x7f000001",
        "2130706433",
        "0.0.0.0",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[2001:0:a00:1::80ff:fffe]",
        "[fe80::1%25eth0]",
        "169.254.169.254",
        "10.1.2.3",
        "[",
        "[]",
        "[::1",
        "a..b",
        "xn--",
        "photos.invalid",
        "café.invalid",
        "",
        "@",
        "user:pw@127.0.0.1",
    ]
)
ports = st.sampled_from(["", ":", ":0", ":80", ":443", ":8080", ":99999", ":-1", ":abc", ":٣"])
paths = st.text(max_size=24).map(lambda t: "/" + t)
schemes = st.sampled_from(["http", "https", "HTTP", "ftp", "file", "gopher", "javascript", ""])
urls = st.one_of(
    st.builds(lambda s, h, p, path: f"{s}://{h}{p}{path}", schemes, hosts, ports, paths),
    st.text(max_size=40),
)
fields = st.one_of(
    st.fixed_dictionaries({"url": urls}),
    st.fixed_dictionaries({"image": image_bytes.map(lambda b: base64.b64encode(b).decode())}),
    st.fixed_dictionaries({"image": st.text(max_size=40)}),
    st.fixed_dictionaries({"url": urls | json_values, "image": json_values}),
    st.dictionaries(st.sampled_from(["url", "image", "x"]), json_values, max_size=3),
)
content_types = st.sampled_from(
    ["application/json", "Application/JSON; charset=utf-8", "image/jpeg", "text/plain", "", "application/json;"]
) | st.text(max_size=12)
headers = st.one_of(
    st.dictionaries(st.sampled_from(["content-type", "Content-Type", "x-other"]), content_types, max_size=2),
    json_values,
)


def body_text(raw: bytes, as_base64: bool) -> str:
    return base64.b64encode(raw).decode() if as_base64 else raw.decode("utf-8", "replace")


bodies = st.one_of(
    image_bytes,
    fields.map(lambda f: json.dumps(f).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"[" * 50_000, b'{"url": ' + b"9" * 5_000 + b"}", b"{", b"{}", b""]),
)
proxy_events = st.builds(
    lambda version_keys, hdrs, raw, as_base64, flag, extra: {
        **version_keys,
        "headers": hdrs,
        "body": body_text(raw, as_base64),
        "isBase64Encoded": as_base64 if flag is None else flag,
        **extra,
    },
    st.sampled_from([{"version": "2.0", "routeKey": "POST /predict"}, {"httpMethod": "POST", "resource": "/predict"}]),
    headers,
    bodies,
    st.booleans(),
    st.none() | json_values,
    st.dictionaries(st.sampled_from(["body", "headers", "isBase64Encoded"]), json_values, max_size=1),
)
events = st.one_of(fields, proxy_events, json_values)


def status_and_body(response) -> tuple[int, dict]:
    """(status, JSON body) of the handler's answer, checking its shape on the way."""
    assert isinstance(response, dict), response
    json.dumps(response)  # what the runtime will serialize
    if "isBase64Encoded" in response:  # API Gateway proxy format
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])
    return response.get("statusCode", 200), response


def check_answer(status: int, body: dict, must_succeed: bool = False) -> None:
    """200 or a 4xx with its reason; must_succeed: 200 only (a real photo in an accepted format, unchanged)."""
    assert status == 200 or (400 <= status < 500 and not must_succeed), (status, body)
    if status == 200:
        assert body["top"] in LABELS and len(body["predictions"]) == len(LABELS)
    else:
        assert isinstance(body["error"], str) and body["error"]


def sends_a_photo(event) -> bool:
    """A direct invocation with exactly one field, 'image': a real photo, base64, in an accepted format."""
    if not (isinstance(event, dict) and set(event) == {"image"} and isinstance(event["image"], str)):
        return False
    return any(event["image"] == base64.b64encode(seed).decode() for seed in ACCEPTED)


@pytest.fixture
def short_fetch(handler, monkeypatch):
    # The fuzzed URLs never reach a server, but one that names a public address must not cost 5 s an example.
    monkeypatch.setattr(handler, "FETCH_TIMEOUT_S", 0.3)


@settings(FUZZ, max_examples=800)
@given(event=events)
def test_in_process_every_event_gets_json_200_or_4xx(handler, short_fetch, event):
    check_answer(*status_and_body(handler.lambda_handler(event)), must_succeed=sends_a_photo(event))


@settings(FUZZ, max_examples=300)
@given(data=image_bytes)
def test_in_process_any_bytes_as_an_image_get_200_or_4xx(handler, data):
    for event in (
        {"image": base64.b64encode(data).decode()},
        {"version": "2.0", "body": body_text(data, True), "isBase64Encoded": True},
    ):
        check_answer(*status_and_body(handler.lambda_handler(event)), must_succeed=data in ACCEPTED)


@pytest.fixture(scope="module")
def gateway(small_run, tmp_path_factory):
    if not RIE.exists():
        pytest.fail(f"{RIE} missing: `make rie` fetches it (make test does)")
    with open(tmp_path_factory.mktemp("fuzz-serve") / "serve.log", "w+") as log:
        process, base = serve.launch(small_run / "artifacts/tflite" / f"{VARIANT}.tflite", 2, log=log)
        yield process, int(base.rsplit(":", 1)[1])
        alive = process.poll() is None
        process.terminate()
        process.wait(timeout=15)
        log.seek(0)
        print(log.read()[-3000:])
        assert alive, "the gateway died during the fuzz"


def post(port: int, path: str, body: bytes, content_type: "str | None") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def sendable(value: str) -> bool:
    """What http.client lets a client send as a header value."""
    return value.isascii() and value.isprintable() and value == value.strip()


@settings(FUZZ, max_examples=250)
@given(
    body=bodies,
    content_type=st.none()
    | content_types.filter(sendable)
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
)
def test_gateway_predict_answers_json_200_or_4xx(gateway, body, content_type):
    process, port = gateway
    status, answer = post(port, "/predict", body, content_type)
    # The body is read as the image itself unless the client calls it JSON (a photo never starts with "{").
    check_answer(status, answer, must_succeed=body in ACCEPTED and "json" not in (content_type or "").lower())
    assert process.poll() is None


@settings(FUZZ, max_examples=150)
@given(event=st.one_of(fields, proxy_events, json_values), raw=st.none() | st.binary(max_size=32))
def test_gateway_invocation_answers_json_200_or_4xx(gateway, event, raw):
    process, port = gateway
    status, answer = post(port, serve.INVOKE_PATH, json.dumps(event).encode() if raw is None else raw, None)
    if status == 200:  # the Invoke API: the function's own answer, with its status inside
        check_answer(*status_and_body(answer), must_succeed=raw is None and sends_a_photo(event))
    else:
        assert 400 <= status < 500 and answer["message"], (status, answer)
    assert process.poll() is None


request_heads = st.builds(
    lambda method, path, length, extra, body: (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n{length}{extra}\r\n".encode("latin-1", "replace") + body
    ),
    st.sampled_from(["POST", "GET", "PUT", "POST", "BREW"]),
    st.sampled_from(["/predict", serve.INVOKE_PATH, "/", "/predict?x=1", "*", "/../etc"]),
    st.one_of(
        st.sampled_from(["", "Content-Length: -1\r\n", "Content-Length: abc\r\n", "Content-Length: 1e3\r\n"]),
        st.sampled_from(["Content-Length: 99999999999999999999\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n"]),
        st.sampled_from(["Transfer-Encoding: chunked\r\n", "Content-Length: ٣\r\n", "Content-Length: 7000000\r\n"]),
        st.integers(0, 200).map(lambda n: f"Content-Length: {n}\r\n"),
        st.text(max_size=20).map(lambda t: f"Content-Length: {t}\r\n".replace("\n", "").replace("\r", "") + "\r\n"),
    ),
    st.sampled_from(["", "Content-Type: application/json\r\n", "X: " + "a" * 70_000 + "\r\n", "Bad header\r\n"]),
    st.binary(max_size=80),
)


@settings(FUZZ, max_examples=200)
@given(request=request_heads | st.binary(max_size=200))
def test_gateway_never_drops_a_connection(gateway, request):
    """Raw requests with hostile request lines, Content-Lengths and headers: always an HTTP answer with JSON."""
    process, port = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the body ends here, whatever Content-Length said
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert process.poll() is None
    if not answer:  # a blank request line is no request: http.server closes without a word, as servers do
        assert not str(request.split(b"\n")[0], "latin-1").split(), request[:200]
        return
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), answer[:200]
    status = int(lines[0].split()[1])
    assert status == 200 or 400 <= status < 500, answer[:300]
    length = int(next(line.split(":", 1)[1] for line in lines if line.lower().startswith("content-length:")))
    assert isinstance(json.loads(rest[:length]), dict)  # the first answer; keep-alive may add more
