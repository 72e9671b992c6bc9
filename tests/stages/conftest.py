"""Fixtures of the stage tests: the small run's handler and the test photos its verify stage scored, local
web servers for a folder, and an environment for each of the function's runtimes alone."""

import contextlib
import csv
from pathlib import Path

import pytest

from pipeline import variants
from support import ROOT, requirements_venv, serve_folder


@pytest.fixture(scope="module")
def handler(small_run):
    """The handler module serving the small run's full int8 model (set on the module: another test
    file may have imported it first, and MODEL_PATH is read at import)."""
    import importlib

    module = importlib.import_module("serving.handler")
    module.MODEL_PATH = small_run / "artifacts/tflite/full_int8.tflite"
    module.model.cache_clear()
    return module


@pytest.fixture(scope="module")
def photo_path(small_run) -> Path:
    """A real test photo the small run's verify stage scored (its first), so answers can be compared with verify's."""
    with open(small_run / "artifacts/verify/predictions.csv", newline="") as f:
        return Path(next(csv.DictReader(f))["path"])


@pytest.fixture(scope="module")
def photo(photo_path) -> bytes:
    return photo_path.read_bytes()


@pytest.fixture(scope="module")
def decided_photo(small_run) -> bytes:
    """The test photo the handler's full int8 model is surest of (verify's widest margin between its top two
    classes): re-encoding it (GIF's 256 colours, JPEG again) cannot flip its class, so a different class is the
    format's fault, not the model's indecision (a tenth of the test photos have margins under 0.01)."""
    with open(small_run / "artifacts/verify/predictions.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["model"] == "full_int8"]

    def margin(row: dict) -> float:
        first, second = sorted((float(v) for k, v in row.items() if k.startswith("p_")), reverse=True)[:2]
        return first - second

    return Path(max(rows, key=margin)["path"]).read_bytes()


@pytest.fixture
def http_dir():
    """Serve a folder over HTTP on 127.0.0.1 until the test ends; yields a function folder -> base URL."""
    with contextlib.ExitStack() as servers:
        yield lambda folder: servers.enter_context(serve_folder(folder))


# The function's two runtimes, each in an environment with its requirements file alone. Session-scoped and
# asked for by a module's usefixtures, so a worker builds them (pip, tens of seconds) before its tests wait
# for the small run, not after it.
@pytest.fixture(scope="session")
def litert_python(tmp_path_factory) -> Path:
    """The python of an environment with lambda/requirements.txt alone: no TensorFlow."""
    return requirements_venv(tmp_path_factory.mktemp("litert"), ROOT / variants.RUNTIMES["litert"]["requirements"])


@pytest.fixture(scope="session")
def onnxruntime_python(tmp_path_factory) -> Path:
    """The python of an environment with lambda/requirements-onnxruntime.txt alone: no LiteRT, no TensorFlow."""
    requirements = ROOT / variants.RUNTIMES["onnxruntime"]["requirements"]
    return requirements_venv(tmp_path_factory.mktemp("onnxruntime"), requirements)
