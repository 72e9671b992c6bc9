"""An ONNX Runtime variant served like a LiteRT one: the handler, `make serve`'s emulator and a fresh
environment with the ONNX Runtime requirements alone, on the small run's real onnx_int8 model."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import requests

from pipeline import serve, variants
from support import ROOT

# Its environment of one requirements file is built before the module waits for the small run
# (tests/stages/conftest.py).
pytestmark = pytest.mark.usefixtures("onnxruntime_python")

RIE = ROOT / ".cache" / "aws-lambda-rie-x86_64"
VARIANT = "onnx_int8"
# Runs the handler on one photo; prints its answer and which runtimes the process imported.
ANSWER = (
    "import base64, json, sys\nfrom serving import handler\n"
    "answer = handler.lambda_handler({'image': base64.b64encode(open(sys.argv[1], 'rb').read()).decode()})\n"
    "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'onnxruntime', 'ai_edge_litert', 'tensorflow'})\n"
    "print(json.dumps({'answer': answer, 'loaded': loaded}))\n"
)


@pytest.fixture(scope="module")
def verified(small_run):
    """The verify stage's answers for onnx_int8 (first photo of the test split, then every 19th)."""
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    return predictions[predictions["model"] == VARIANT].iloc[::19]


def answer(python: str, model, photo: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "lambda"), "MODEL_PATH": str(model), "NUM_THREADS": "2"}
    result = subprocess.run([python, "-c", ANSWER, photo], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_handler_answers_with_an_onnx_model_and_loads_only_onnxruntime(small_run, verified):
    row = verified.iloc[0]
    out = answer(sys.executable, small_run / variants.model_path(VARIANT), row["path"])
    assert out["loaded"] == ["onnxruntime"]
    assert out["answer"]["top"] == row["predicted"] and out["answer"]["model"]["variant"] == VARIANT
    for p in out["answer"]["predictions"]:
        assert p["probability"] == pytest.approx(row[f"p_{p['label']}"], abs=1e-4)
    # ...and a LiteRT model loads LiteRT alone.
    assert answer(sys.executable, small_run / variants.model_path("full_int8"), row["path"])["loaded"] == [
        "ai_edge_litert"
    ]


def test_make_serve_serves_an_onnx_model(small_run, verified, tmp_path):
    if not RIE.exists():
        pytest.fail(f"{RIE} missing: `make rie` fetches it (make test does)")
    with open(tmp_path / "serve.log", "w+") as log:
        process, base = serve.launch(small_run / variants.model_path(VARIANT), 2, log=log)
        try:
            for _, row in verified.head(3).iterrows():
                with open(row["path"], "rb") as photo:
                    got = requests.post(base + "/predict", data=photo.read(), timeout=30)
                assert got.status_code == 200, got.text
                assert got.json()["top"] == row["predicted"]
        finally:
            process.terminate()
            process.wait(timeout=15)


def test_onnxruntime_requirements_alone_are_enough(onnxruntime_python, small_run, verified):
    """A fresh environment with lambda/requirements-onnxruntime.txt only: no LiteRT, no TensorFlow."""
    assert variants.requirements(VARIANT) == "lambda/requirements-onnxruntime.txt"
    python = str(onnxruntime_python)
    row = verified.iloc[0]
    out = answer(python, small_run / variants.model_path(VARIANT), row["path"])
    assert out["loaded"] == ["onnxruntime"] and out["answer"]["top"] == row["predicted"]
    assert subprocess.run([python, "-c", "import ai_edge_litert"], capture_output=True).returncode != 0
