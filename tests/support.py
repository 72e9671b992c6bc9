"""What the tests share besides fixtures: the project's paths and labels, generated data sets, runs of the
pipeline's stages (in a subprocess, in one process, the small run and the tiny deploy run), and small local
web servers. Test modules import it by name (pyproject's pythonpath puts tests/ on the path); the fixtures
that hand these out are in the conftest.py files."""

import base64
import contextlib
import csv
import http.server
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from filelock import FileLock
from PIL import Image

from pipeline.demo import make_project, set_key, small_params, small_run_params  # noqa: F401 (the tests' too)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED_DATASET = ROOT.parent / "shared" / "clothing-dataset-small"
BIN = str(Path(sys.executable).parent)
# The default data set's classes: its folder names, sorted (the data stage's order, data/labels.json).
LABELS = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")
# What the bench stage measures with the default variants, in its order.
RUNTIMES = [
    "keras",
    "float32",
    "float16",
    "dynamic_int8",
    "full_int8",
    "onnx_float32",
    "onnx_int8",
]


def make_dataset(root: Path, per_class: int = 4, size: int = 80) -> Path:
    """A stand-in data set: per_class generated JPEGs per class and split, each class its own hue."""
    rng = np.random.default_rng(0)
    for split in ("train", "validation", "test"):
        for i, label in enumerate(LABELS):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                base = np.array([25 * i, 255 - 25 * i, (80 * i) % 256], dtype=np.float64)
                pixels = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.jpg", quality=90)
    return root


def clearest(scores: np.ndarray, share: float) -> np.ndarray:
    """The rows (indices) whose top class leads the second by most, share of them rounded up; scores are
    probabilities or logits, one row per photo. Where a briefly trained model is clear about its answer,
    an int8 variant must keep it; elsewhere its top two classes are often within 0.01 of each other."""
    top_two = np.sort(scores, axis=1)[:, -2:]
    return np.argsort(top_two[:, 1] - top_two[:, 0])[-math.ceil(len(scores) * share) :]


def split_photos(project: Path, split: str = "test") -> list[str]:
    """The photos the data stage put in a split of the project's manifest, in its order."""
    with open(project / "data/manifest.csv", newline="") as f:
        return [row["path"] for row in csv.DictReader(f) if row["split"] == split]


def softmax(logits) -> np.ndarray:
    """The tests' own probabilities from logits (last axis), in float64, not the function's."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def tiny_project(project: Path, dataset_dir: Path, model: bytes) -> list:
    """What the targets stage reads, made by hand: verify kept one variant, onnx_int8 (model: ONNX bytes), and
    Keras' probabilities say class 0 for each of 4 test photos of the real data set. Returns the photos."""
    photos = sorted((dataset_dir / "test" / LABELS[0]).glob("*.jpg"))[:4]
    (project / "data").mkdir(exist_ok=True)
    pd.DataFrame({"path": [str(p) for p in photos], "label": LABELS[0], "split": "test"}).to_csv(
        project / "data/manifest.csv", index=False
    )
    (project / "artifacts/model").mkdir(parents=True)
    (project / "artifacts/model/info.json").write_text(json.dumps({"labels": list(LABELS)}))
    (project / "artifacts/metrics").mkdir()
    (project / "artifacts/metrics/verify.json").write_text(json.dumps({"keras": {"accuracy": 1.0}}))
    keras = {f"p_{name}": 1.0 if i == 0 else 0.0 for i, name in enumerate(LABELS)}
    rows = pd.DataFrame([{"path": str(p), "label": LABELS[0], "model": "keras", "predicted": LABELS[0], **keras}
                         for p in photos])  # fmt: skip
    (project / "artifacts/verify").mkdir()
    rows.to_csv(project / "artifacts/verify/predictions.csv", index=False)
    (project / "artifacts/onnx").mkdir()
    (project / "artifacts/onnx/onnx_int8.onnx").write_bytes(model)
    return photos


def set_params(project: Path, **overrides) -> None:
    """Change keys of a project's params.yaml: set_params(p, **{"verify.min_agreement": 1.0})."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in overrides.items():
        set_key(params, key, value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_run(run_dir: Path, dest: Path, *skip: str) -> Path:
    """A copy of a finished run's project (without DVC's cache) to change and rerun a stage in."""
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(".dvc", *skip))
    return dest


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 600, **popen) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": f"{cwd}:{cwd / 'lambda'}",
    }
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **popen)
    except subprocess.TimeoutExpired as e:  # stopped: what it had said by then is all there is to go on
        said = [(out or b"")[-3000:] for out in (e.stdout, e.stderr)]
        said = [s.decode(errors="replace") if isinstance(s, bytes) else s for s in said]
        raise AssertionError(f"{' '.join(cmd)}: no result after {timeout} s:\n{said[0]}\n{said[1]}") from None
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def stage(name: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", f"pipeline.{name}"], cwd, check=check)


IN_ONE_PROCESS = """
import contextlib, importlib, json, os, sys
names, folders = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for folder in folders:
    os.chdir(folder)
    print(f"== {folder}", file=sys.stderr, flush=True)
    try:
        with open("stages.log", "w") as log, contextlib.redirect_stdout(log):
            for name in names:
                importlib.import_module(f"pipeline.{name}").main()
    except BaseException:
        sys.stderr.write("stages.log ends:\\n" + open("stages.log").read()[-4000:])
        raise
    if "keras" in sys.modules:  # each project as a fresh process would start it
        import keras
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
"""


def stages_in_one_process(names: list[str], projects: list[Path], timeout: int = 840) -> None:
    """The stages' main() in each project in turn, in one Python process: TensorFlow is imported once (~12 s
    of CPU a process), for tests about what the stages make, not about their launcher (stage() is that).
    Each project's printed lines are in its stages.log (its tail on stderr when it fails); the first project's
    code is the one imported. The timeout comes before pytest-timeout's 900 s, so the process is stopped."""
    run([sys.executable, "-c", IN_ONE_PROCESS, json.dumps(names), json.dumps([str(p) for p in projects])], projects[0],
        timeout=timeout)  # fmt: skip


def build_small_run(folder: Path, dataset: Path) -> Path:
    """dvc repro of the whole pipeline on a small subset at 75 px, in folder; its output in repro.log."""
    project = make_project(folder, small_run_params(dataset))  # make demo's configuration
    run(["dvc", "init", "--no-scm", "-q"], project)
    # 840 s: under pytest-timeout's 900 s, so a stuck run ends as a TimeoutExpired naming dvc repro.
    (project / "repro.log").write_text(run(["dvc", "repro"], project, timeout=840, preexec_fn=first_in_line).stdout)
    return project


def first_in_line() -> None:
    """The small run ahead of the other workers' tests on the CPU: most files wait for it, so while it
    builds the suite's time is its time. Raising a priority needs root (CI's case); elsewhere it runs at
    the others' priority."""
    with contextlib.suppress(PermissionError):
        os.nice(-10)


# A user's own model as small as a classifier gets: one convolution and the logits, 75 px, fixed weights.
TINY_MODEL = """
import keras
keras.utils.set_random_seed(0)
layers = keras.layers
keras.Sequential([keras.Input((75, 75, 3)), layers.Conv2D(8, 3, strides=4, activation="relu"),
                  layers.GlobalAveragePooling2D(), layers.Dense(10, name="logits")]).save("tiny.keras")
"""
DEPLOY_RUN_STAGES = ["data", "train", "convert", "verify", "targets", "bench", "recommend"]


def build_deploy_run(folder: Path, dataset: Path) -> Path:
    """A finished run of a tiny model, for the deploy tests: the model is loaded as a user's own .keras
    (train.mode load), then every stage up to recommend runs for real on 3 photos a class, in one process,
    in under a minute of CPU. So the deploy tests, which check how a release ships and not what the model
    answers, start while the small run trains (minutes on one core, the other one otherwise idle)."""
    params = small_params(dataset, **{
        "data.max_per_class": 3, "train.mode": "load", "train.load_from": str(folder / "tiny.keras"),
        "train.min_load_accuracy": 0.0, "bench.warm_runs": 3, "bench.handler_runs": 1, "bench.keras": False,
    })  # fmt: skip
    make_project(folder, params)
    run([sys.executable, "-c", TINY_MODEL], folder)
    stages_in_one_process(DEPLOY_RUN_STAGES, [folder])
    return folder


def shared_run(name: str, build, tmp_path_factory, dataset_dir: Path, folder: "Path | None" = None) -> Path:
    """A run that pytest-xdist's workers share: the first to ask builds it, the others wait for it."""
    if folder is None and not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name), dataset_dir)
    folder = folder or tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{folder}.lock"):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder, dataset_dir)
            (folder / ".complete").touch()
    return folder


def accepted_formats(photo: Image.Image) -> dict[str, bytes]:
    """The photo in every format the function accepts: lossless where the format allows, MPO (a phone's
    multi-picture JPEG) with the photo as its first picture, GIF with Pillow's adaptive 256-colour palette."""
    options = {
        "JPEG": {"quality": 95},
        "MPO": {"quality": 95, "save_all": True, "append_images": [photo.rotate(180)]},
        "PNG": {},
        "WEBP": {"lossless": True},
        "GIF": {},
        "BMP": {},
    }
    encoded = {}
    for fmt, kwargs in options.items():
        buffer = io.BytesIO()
        photo.convert("RGB").save(buffer, format=fmt, **kwargs)
        encoded[fmt] = buffer.getvalue()
        assert Image.open(io.BytesIO(encoded[fmt])).format == fmt  # MPO really is MPO, not a plain JPEG
    return encoded


class SiteHandler(http.server.BaseHTTPRequestHandler):
    """A local test web server's handler: answer() sends a status, headers and a body, and a client
    that hung up is not an error; nothing is logged."""

    def answer(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder: Path):
    """The folder over HTTP on 127.0.0.1 while the block runs; its base URL."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


EVENTS = ROOT / "events"
BOUNDARY = "------------------------d74496d66958873e"


def multipart(data: bytes) -> bytes:
    """What `curl -F file=@photo.jpg` sends."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
    return head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def http_api(body: bytes, content_type: "str | None", method: str = "POST", path: str = "/predict") -> dict:
    """An HTTP API (payload 2.0) request to the function with this body, base64-encoded as API Gateway sends it."""
    return {
        "version": "2.0",
        "rawPath": path,
        "headers": {"content-type": content_type} if content_type else {},
        "requestContext": {"http": {"method": method, "path": path}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def event(name: str) -> dict:
    """A sample event of the project's events/ folder."""
    return json.loads((EVENTS / name).read_text())


def requirements_venv(folder: Path, requirements: Path) -> Path:
    """A fresh environment with these requirements alone (pip's cache makes it quick); its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "-r", requirements], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    return python
