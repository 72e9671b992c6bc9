"""The handler under the real Lambda runtime interface emulator, end to end over HTTP."""

import base64
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests

from conftest import ROOT
from pipeline import serve

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
def photos(small_run):
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    rows = predictions[predictions["model"] == VARIANT].iloc[::19]
    return [(open(path, "rb").read(), row) for path, (_, row) in zip(rows["path"], rows.iterrows(), strict=True)]


def test_invocation_and_predict_give_the_verified_answer(server, photos):
    data, row = photos[0]
    direct = requests.post(server + INVOKE, json={"image": base64.b64encode(data).decode()}, timeout=30)
    assert direct.status_code == 200
    answer = direct.json()
    assert answer["top"] == row["predicted"]
    for p in answer["predictions"]:
        assert p["probability"] == pytest.approx(row[f"p_{p['label']}"], abs=2e-5)
    raw = requests.post(server + "/predict", data=data, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "application/json"
    assert raw.json()["predictions"] == answer["predictions"]


def test_fifty_concurrent_requests_good_and_bad(server, photos):
    bad = [
        ("/predict", {"data": b"not an image at all"}, 415),
        ("/predict", {"data": b"{broken json", "headers": {"Content-Type": "application/json"}}, 400),
        ("/predict", {"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, 403),
        ("/predict", {"json": {"url": "http://127.0.0.1:1/x.jpg"}}, 403),
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


def test_image_requirements_alone_are_enough(tmp_path, small_run, dataset_dir):
    """A fresh environment with lambda/requirements.txt only (no TensorFlow) runs the handler."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-r", str(ROOT / "lambda/requirements.txt")],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    photo = next((dataset_dir / "test" / "shoes").iterdir())
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
    result = subprocess.run([str(venv / "bin/python"), "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["top"] in [p["label"] for p in answer["predictions"]] and len(answer["predictions"]) == 10
    tf = subprocess.run([str(venv / "bin/python"), "-c", "import tensorflow"], capture_output=True)
    assert tf.returncode != 0
