"""The handler under the real Lambda runtime interface emulator, end to end over HTTP."""

import base64
import contextlib
import io
import json
import socket
import subprocess
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests
from PIL import Image

from pipeline import serve
from support import ROOT, accepted_formats

# Its environment of one requirements file is built before the module waits for the small run
# (tests/stages/conftest.py).
pytestmark = pytest.mark.usefixtures("litert_python")

RIE = ROOT / ".cache" / "aws-lambda-rie-x86_64"
INVOKE = serve.INVOKE_PATH
VARIANT = "full_int8"


@pytest.fixture(scope="module")
def server(small_run, tmp_path_factory):
    if not RIE.exists():
        pytest.fail(f"{RIE} missing: `make rie` fetches it (make test does)")
    with open(tmp_path_factory.mktemp("serve") / "serve.log", "w+") as log:
        try:
            process, base = serve.launch(small_run / "artifacts/tflite" / f"{VARIANT}.tflite", 2, log=log)
        except RuntimeError as e:
            log.seek(0)
            pytest.fail(f"{e}\n{log.read()}")
        yield base
        process.terminate()
        process.wait(timeout=15)
        log.seek(0)
        print(log.read()[-3000:])  # shown by pytest when a test of this module failed


@pytest.fixture(scope="module")
def verified(small_run) -> pd.DataFrame:
    """The verify stage's answers for the served variant: the first test photo, then every 19th."""
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    return predictions[predictions["model"] == VARIANT].iloc[::19]


@pytest.fixture(scope="module")
def photos(verified):
    return [
        (open(path, "rb").read(), row) for path, (_, row) in zip(verified["path"], verified.iterrows(), strict=True)
    ]


def check_matches_verify(answer: dict, row) -> None:
    assert answer["top"] == row["predicted"]
    for p in answer["predictions"]:
        assert p["probability"] == pytest.approx(row[f"p_{p['label']}"], abs=2e-5)


def test_invocation_and_predict_give_the_verified_answer(server, photos):
    data, row = photos[0]
    direct = requests.post(server + INVOKE, json={"image": base64.b64encode(data).decode()}, timeout=30)
    assert direct.status_code == 200
    answer = direct.json()
    check_matches_verify(answer, row)
    raw = requests.post(server + "/predict", data=data, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "application/json"
    assert raw.json()["predictions"] == answer["predictions"]


def test_fifty_concurrent_requests_good_and_bad(server, photos):
    bad = [
        ("/predict", {"data": b"not an image at all"}, 415),
        ("/predict", {"data": b"{broken json", "headers": {"Content-Type": "application/json"}}, 400),
        ("/predict", {"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, 403),
        ("/predict", {"json": {"url": "http://127.0.0.1/x.jpg"}}, 403),
        ("/predict", {"json": {"url": "http://127.0.0.1:1/x.jpg"}}, 400),  # only ports 80 and 443
        (INVOKE, {"json": {"url": "gopher://example.com"}}, 400),
        (INVOKE, {"json": {"image": "not base64!"}}, 400),
        (INVOKE, {"json": {}}, 400),
    ]
    jobs = []
    for i in range(50):
        if i % 2 == 0:
            data, row = photos[(i // 2) % len(photos)]
            path = "/predict" if i % 4 == 0 else INVOKE
            kwargs = {"data": data} if path == "/predict" else {"json": {"image": base64.b64encode(data).decode()}}
            jobs.append((path, kwargs, 200, row["predicted"]))
        else:
            path, kwargs, status = bad[(i // 2) % len(bad)]
            jobs.append((path, kwargs, status, None))

    def send(job):
        path, kwargs, _, _ = job
        r = requests.post(server + path, timeout=120, **kwargs)
        body = r.json()
        return body.get("statusCode", r.status_code), body

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(send, jobs))
    for (path, _, status, top), (got, body) in zip(jobs, results, strict=True):
        assert got == status, (path, body)
        if top is not None:
            assert body["top"] == top
        else:
            assert body["error"]
    assert requests.post(server + INVOKE, json={"image": base64.b64encode(photos[0][0]).decode()}, timeout=30).ok


def test_every_accepted_format_through_the_gateway_gets_the_jpegs_answer(server, decided_photo):
    jpeg = requests.post(server + "/predict", data=decided_photo, timeout=30)
    assert jpeg.status_code == 200, jpeg.text
    for fmt, data in accepted_formats(Image.open(io.BytesIO(decided_photo))).items():
        response = requests.post(server + "/predict", data=data, timeout=30)
        assert response.status_code == 200 and response.json()["top"] == jpeg.json()["top"], (fmt, response.text)


def test_image_requirements_alone_are_enough(litert_python, small_run, verified):
    """A fresh environment with lambda/requirements.txt only (no TensorFlow) runs the handler."""
    row = verified.iloc[0]
    photo = row["path"]
    code = (
        "import base64, json, sys\nfrom serving import handler\n"
        f"answer = handler.lambda_handler({{'image': base64.b64encode(open({str(photo)!r}, 'rb').read()).decode()}})\n"
        "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)\n"
        "print(json.dumps(answer))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "lambda"),
        "MODEL_PATH": str(small_run / "artifacts/tflite" / f"{VARIANT}.tflite"),
    }
    result = subprocess.run([litert_python, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(answer["predictions"]) == 10
    check_matches_verify(answer, row)  # the same numbers as in the project's own environment
    tf = subprocess.run([litert_python, "-c", "import tensorflow"], capture_output=True)
    assert tf.returncode != 0


def raw_request(base: str, request: bytes, stall: bool = False) -> tuple[int, dict]:
    """Send bytes as they are (no client library to tidy them), then close our side (or stall with it open, as
    a client that stops mid-request does), and read the one answer."""
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=30) as sock:
        sock.sendall(request)
        if not stall:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("content_length", "status"),
    [("-1", 400), ("abc", 400), ("1e3", 400), (" 5\r\nContent-Length: 6", 400), ("99999999999", 413), ("5", 400)],
)
def test_bad_content_length_gets_a_json_answer(server, content_length, status):
    request = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n\r\nabc".encode()
    got, body = raw_request(server, request)  # "5" with 3 bytes sent: the body is shorter than its length
    assert got == status and body["message"]


def test_a_request_over_6_mb_is_413_and_the_client_reads_it(server):
    response = requests.post(server + "/predict", data=b"\xff" * (6 * 1024 * 1024 + 1), timeout=30)
    assert response.status_code == 413 and "6,291,456" in response.json()["message"]
    encoded = requests.post(server + "/predict", data=b"\xff" * (5 * 1024 * 1024), timeout=30)
    assert encoded.status_code == 413 and "base64" in encoded.json()["message"]


def test_garbage_and_unknown_routes_get_json(server):
    assert raw_request(server, b"GARBAGE\r\n\r\n")[0] == 400
    assert raw_request(server, b"BREW /predict HTTP/1.1\r\n\r\n") == (404, {"message": "Not Found"})
    assert requests.post(server + "/elsewhere", data=b"x", timeout=10).status_code == 404
    invalid = requests.post(server + INVOKE, data=b"{not json", timeout=10)
    assert invalid.status_code == 400 and invalid.json()["message"]
    # A NUL first: json.loads alone reads these bytes as UTF-16 "0", which the runtime (UTF-8) refuses.
    assert requests.post(server + INVOKE, data=b"\x000", timeout=10).status_code == 400


def never_answer(sock: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            conn, _ = sock.accept()
            stop.wait(30)
            conn.close()


@pytest.fixture(scope="module")
def strict_server(small_run, tmp_path_factory):
    """A second gateway: function timeout 3 s (a cold start fits in it, a 5 s fetch deadline does not), socket
    timeout 1 s, and a site it may fetch from that never answers."""
    site = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    threading.Thread(target=never_answer, args=(site, stop), daemon=True).start()
    port = site.getsockname()[1]
    options = ("--function-timeout", "3", "--socket-timeout", "1", "--allow-hosts", "127.0.0.1")
    with open(tmp_path_factory.mktemp("serve") / "strict.log", "w+") as log:
        model = small_run / "artifacts/tflite" / f"{VARIANT}.tflite"
        process, base = serve.launch(model, 2, log=log, extra_args=(*options, "--allow-ports", str(port)))
        yield base, f"http://127.0.0.1:{port}/x.jpg"
        process.terminate()
        process.wait(timeout=15)
        stop.set()
        site.close()


def test_a_function_timeout_is_a_502_json(strict_server, dataset_dir):
    base, slow_url = strict_server
    response = requests.post(base + "/predict", json={"url": slow_url}, timeout=30)
    assert response.status_code == 502 and response.json()["message"] == "Internal Server Error"
    assert "timed out" in response.json()["error"]
    photo = next((dataset_dir / "test" / "shoes").iterdir()).read_bytes()
    recovered = requests.post(base + "/predict", data=photo, timeout=30)
    assert recovered.status_code == 200, recovered.text  # a fresh runtime answers the next request


def test_a_client_that_stalls_gets_408(strict_server):
    base, _ = strict_server
    started = time.monotonic()
    status, body = raw_request(base, b"POST /predict HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", stall=True)
    # 5 s: the 1 s socket timeout with 4 s to spare on a loaded machine; without it the stall would last 30 s.
    assert status == 408 and body["message"] and time.monotonic() - started < 5
    status, _ = raw_request(base, b"POST /predict HTTP/1.1\r\nContent-Le", stall=True)  # stalls in its headers
    assert status == 408


def test_a_function_error_is_a_502_json(small_run, tmp_path):
    with open(tmp_path / "serve.log", "w+") as log:
        model = small_run / "artifacts/tflite" / f"{VARIANT}.tflite"
        process, base = serve.launch(model, 2, log=log, extra_args=("--handler", "serving.handler.no_such_function"))
        try:
            response = requests.post(base + "/predict", data=b"x", timeout=30)
            invoked = requests.post(base + INVOKE, json={"url": "http://example.com/x.jpg"}, timeout=30)
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert response.status_code == 502 and response.json()["message"] == "Internal Server Error"
    assert "HandlerNotFound" in response.json()["error"]
    assert invoked.json()["errorType"] == "Runtime.HandlerNotFound"  # the Invoke API reports it as Lambda does


@pytest.mark.parametrize("lost", ["the emulator's runtime API", "the gateway's"])
def test_a_start_that_loses_a_port_to_another_process_tries_new_ones(lost, small_run, photos, tmp_path, monkeypatch):
    """The emulator's runtime API binds the port after its own, the gateway its port after the emulator is
    up: one another process takes first (as in a CI run, where 11 tests lost their server to it) makes
    that start fail, and launch starts again on new ports."""
    lost_span, offset = (2, 1) if "emulator" in lost else (1, 0)  # the emulator's pair; its port + 1 is the API's
    picked, real = [], serve.free_port

    def free_port(span=1):
        port = real(span)
        if span == lost_span:
            picked.append(port)
            if len(picked) == 1:  # the other process, between the pick and the child's bind
                taken.bind(("127.0.0.1", port + offset))
                taken.listen()
        return port

    monkeypatch.setattr(serve, "free_port", free_port)
    with socket.socket() as taken, open(tmp_path / "serve.log", "w+") as log:
        process, base = serve.launch(small_run / "artifacts/tflite" / f"{VARIANT}.tflite", 2, log=log)
        try:
            answer = requests.post(base + INVOKE, json={"image": base64.b64encode(photos[0][0]).decode()}, timeout=30)
        finally:
            process.terminate()
            process.wait(timeout=15)
        log.seek(0)
        text = log.read()
    assert len(picked) == 2 and picked[1] != picked[0]
    assert text.lower().count("address already in use") == 1, text[-2000:]
    assert answer.status_code == 200 and answer.json()["top"] == photos[0][1]["predicted"]  # the second start serves


ECHO = '''"""A function that answers whatever the request's body says: the test picks what the gateway gets back."""
import base64
import json


def lambda_handler(event, context):
    return json.loads(base64.b64decode(event["body"]))
'''


@pytest.fixture(scope="module")
def echo_server(small_run, tmp_path_factory):
    """A gateway whose function (echo.py, on the function's path) returns the JSON the client posted."""
    folder = tmp_path_factory.mktemp("echo-function")
    (folder / "echo.py").write_text(ECHO)
    with open(folder / "serve.log", "w+") as log:
        model = small_run / "artifacts/tflite" / f"{VARIANT}.tflite"
        options = ("--handler", "echo.lambda_handler", "--function-path", str(folder))
        process, base = serve.launch(model, 2, log=log, extra_args=options)
        yield base
        process.terminate()
        process.wait(timeout=15)
        log.seek(0)
        print(log.read()[-3000:])


@pytest.mark.parametrize(
    "answer",
    [
        [],
        "a string, not a proxy answer",
        {"body": "no status"},
        {"statusCode": "200"},
        {"statusCode": 200.0},
        {"statusCode": 99},
        {"statusCode": 600},
        {"statusCode": 200, "body": 5},
        {"statusCode": 200, "headers": ["Content-Type", "text/plain"]},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    ],
    ids=[
        "list",
        "string",
        "no-status",
        "status-string",
        "status-float",
        "status-99",
        "status-600",
        "body-int",
        "headers-list",
        "bad-base64",
    ],
)
def test_malformed_proxy_answers_are_502(echo_server, answer):
    response = requests.post(echo_server + "/predict", data=json.dumps(answer).encode(), timeout=30)
    assert response.status_code == 502, response.text
    assert response.json() == {"message": "Internal Server Error", "error": "malformed response"}


def test_a_well_formed_proxy_answer_passes_through_the_echo(echo_server):
    # The same function and gateway as above, so the 502s come from the answers' shape and nothing else.
    answer = {"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "body": "bWFkZQ==", "isBase64Encoded": True}
    response = requests.post(echo_server + "/predict", data=json.dumps(answer).encode(), timeout=30)
    assert (response.status_code, response.headers["Content-Type"], response.text) == (201, "text/plain", "made")


def test_make_serve_serves_the_recommended_variant_unless_told_another(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match="recommendation.json not found: run `dvc repro` first, or name a variant"):
        serve.recommended_model()
    (tmp_path / "artifacts/recommend").mkdir(parents=True)
    choice = {"variant": "float16", "model": "artifacts/tflite/float16.tflite"}  # full int8 excluded, say
    (tmp_path / "artifacts/recommend/recommendation.json").write_text(json.dumps(choice))
    assert serve.recommended_model() == tmp_path / "artifacts/tflite/float16.tflite"
    # make serve VARIANT=...: a variant by the name deploy and the reports use, not a file path
    with pytest.raises(SystemExit, match="float32.tflite not found: run `dvc repro`"):
        serve.variant_model("float32", ["float32", "onnx_int8"])
    with pytest.raises(SystemExit, match="unknown variant 'litert_float32': convert.variants makes float32, onnx_int8"):
        serve.variant_model("litert_float32", ["float32", "onnx_int8"])
    (tmp_path / "artifacts/onnx").mkdir(parents=True)
    (tmp_path / "artifacts/onnx/onnx_int8.onnx").write_bytes(b"model")
    assert serve.variant_model("onnx_int8", ["float32", "onnx_int8"]) == tmp_path / "artifacts/onnx/onnx_int8.onnx"


def sam_http_api_event() -> dict:
    """AWS's own payload format 2.0 sample event, as the aws-sam-cli wheel generates it (`make rie` downloads it)."""
    wheels = sorted((ROOT / ".cache/sam").glob("aws_sam_cli-*.whl"))
    if not wheels:
        pytest.fail("no aws-sam-cli wheel in .cache/sam: `make rie` downloads it (make test does)")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return json.loads(wheel.read("samcli/lib/generated_sample_events/events/apigateway/HttpApi.json"))


def door_event(sample: dict, door: str, photo: bytes) -> dict:
    """The sample filled with a real photo (base64, isBase64Encoded as in the sample), in the shape each
    door sends it: the HTTP API's route and stage, or a function URL's "$default" and its own domain."""
    text = json.dumps(sample)
    fill = {"path": "predict", "method": "POST", "stage": "$default", "account_id": "123456789012",
            "dns_suffix": "us-east-1.amazonaws.com", "body": base64.b64encode(photo).decode()}  # fmt: skip
    for key, value in fill.items():
        text = text.replace("{{{" + key + "}}}", value)
    event = json.loads(text)
    if door == "http_api":
        event["routeKey"] = event["requestContext"]["routeKey"] = "POST /predict"
    else:  # no JWT authorizer on a function URL, an anonymous caller, the URL's domain
        del event["requestContext"]["authorizer"]
        event["requestContext"].update(accountId="anonymous", domainName="abc123.lambda-url.us-east-1.on.aws",
                                       domainPrefix="abc123")  # fmt: skip
    return event


@pytest.mark.parametrize("door", ["http_api", "function_url"])
def test_aws_sample_events_of_both_doors_get_verifys_answer(server, photos, door):
    """AWS's sample event under the runtime interface emulator: the answer each door turns into HTTP."""
    data, row = photos[0]
    event = door_event(sam_http_api_event(), door, data)
    assert event["isBase64Encoded"] is True and event["requestContext"]["http"]["method"] == "POST"
    answer = requests.post(server + INVOKE, json=event, timeout=30)
    assert answer.status_code == 200 and "X-Amz-Function-Error" not in answer.headers
    proxy = answer.json()
    assert proxy["statusCode"] == 200
    check_matches_verify(json.loads(proxy["body"]), row)


@contextlib.contextmanager
def url_gateway(function_base: str):
    """A gateway playing a function URL in front of another gateway's Invoke API path (the same emulator)."""
    from http.server import ThreadingHTTPServer

    from pipeline.gateway import make_gateway

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_gateway(function_base, door="function_url"))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_the_gateway_plays_a_function_url_every_path_and_its_own_502(server, echo_server, photos):
    """make serve --door function_url: every path reaches the function (no /predict route), JSON and raw
    bodies alike; a function error is 502 "Internal Server Error" as plain text, where the HTTP API's is JSON."""
    data, row = photos[0]
    with url_gateway(server) as base:
        root = requests.post(base + "/", json={"image": base64.b64encode(data).decode()}, timeout=30)
        assert root.status_code == 200 and root.headers["Content-Type"] == "application/json"
        check_matches_verify(root.json(), row)
        anywhere = requests.post(base + "/any/path?x=1", data=data, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert anywhere.status_code == 200 and anywhere.json()["top"] == row["predicted"]
    not_json = b"this is no JSON"  # echo.py's json.loads raises: a function error
    with url_gateway(echo_server) as base:
        failed = requests.post(
            base + "/", data=not_json, headers={"Content-Type": "application/octet-stream"}, timeout=30
        )
        assert (failed.status_code, failed.headers["Content-Type"], failed.text) == (
            502, "text/plain", "Internal Server Error"
        )  # fmt: skip
    api = requests.post(echo_server + "/predict", data=not_json, timeout=30)
    assert api.status_code == 502 and api.json()["message"] == "Internal Server Error"
