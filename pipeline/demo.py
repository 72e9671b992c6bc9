"""make demo: the whole pipeline on a small configuration, the test suite's own small run (30 photos a
class in train and test, 10 in validation, 5 epochs at 71 then 75 px, every variant, bench, report), in
build/demo/: a project of its own, with its own params.yaml and DVC, so the full run's outputs are never
touched. It ends with the function's handler answering a real test photo with the variant the run
recommends. Run again, it re-runs only the stages whose code or params changed since (none: it just
answers again). The suite builds its small run with the same functions (tests/support.py), so the demo
and the tests run one configuration."""

import base64
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline import cli, paths

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "build" / "demo"
BIN = Path(sys.executable).parent  # dvc, and the `python3` dvc.yaml runs, from this environment
# 30 photos per class and 5 epochs: the model tells some classes apart (~20% validation accuracy against
# 10% by chance), so top-1 agreement between variants is not trivially 1.0. Progressive resizing as the
# default recipe does it: epochs 1-3 at 71 px, then 75 px. 10 validation photos a class: every epoch
# checks them, and the 250 that 30 a class gave took a sixth of each epoch's time.
SMALL_RUN = {
    "data.max_per_class": 30,
    "data.max_validation_per_class": 10,
    "train.scratch.epochs": 5,
    "train.scratch.learning_rate": 0.002,
    "train.scratch.train_sizes": [71],
    "train.scratch.batch_size": 16,
}


def set_key(params: dict, key: str, value) -> None:
    """params["train"]["scratch"]["epochs"] = value for key "train.scratch.epochs"."""
    *sections, name = key.split(".")
    for section in sections:
        params = params[section]
    params[name] = value


def small_params(dataset: Path, **overrides) -> dict:
    """The project's params.yaml, shrunk to a run of a minute or two on 2 cores (keys as "a.b.c": value)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(local_dir=str(dataset), expected_images=0, max_per_class=12)
    params["train"]["scratch"].update(
        input_size=75, train_sizes=[], epochs=4, warmup_epochs=0, learning_rate=0.001, batch_size=8, bn_momentum=0.9
    )
    params["convert"].update(representative_images=20)
    # One thread: the suite keeps both cores busy, where a second thread (and ONNX Runtime's spinning pool)
    # costs CPU and buys no time (the small run's verify alone: 29 s of CPU on two threads, 25 s on one).
    params["verify"].update(min_agreement=0.0, max_accuracy_drop=1.0, num_threads=1)
    # One fresh process per runtime: the tests check a cold start's parts, not a median of several.
    params["bench"].update(warm_runs=10, cold_start_repeats=1, batch_size=4, handler_runs=3)
    params["recommend"].update(max_accuracy_drop=1.0, min_agreement=0.0)
    # No target CPU in the small run: emulating them takes minutes (make test-targets runs the stage under qemu).
    params["targets"].update(architectures=[])
    for key, value in overrides.items():
        set_key(params, key, value)
    return params


def small_run_params(dataset: Path) -> dict:
    """The small run's params: the suite's small_run fixture and make demo."""
    return small_params(dataset, **SMALL_RUN)


def make_project(path: Path, params: dict) -> Path:
    """A copy of the project's stage code and dvc.yaml with its own params.yaml (code copied afresh)."""
    path.mkdir(parents=True, exist_ok=True)
    for code in ("pipeline", "lambda"):
        shutil.rmtree(path / code, ignore_errors=True)
        shutil.copytree(ROOT / code, path / code, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dockerignore", "artifacts/tune/tune.csv"):  # tune.csv: report's dep, header only
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, path / name)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def project_dataset() -> Path:
    """The data set the project's params.yaml names (data.local_dir, relative to the project)."""
    local_dir = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["local_dir"]
    dataset = (ROOT / local_dir).resolve()
    if not dataset.is_dir():
        raise cli.UserError(f"the data set is not at {dataset} (params.yaml data.local_dir): see README, Set up")
    return dataset


def environment(project: Path) -> dict:
    """dvc and its stages on this environment's executables, the project's code first on the path."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": f"{project}{os.pathsep}{project / 'lambda'}",
    }


def repro(project: Path, **popen) -> subprocess.CompletedProcess:
    """dvc repro in the project (a DVC project of its own, outside git)."""
    env = environment(project)
    if not (project / ".dvc").is_dir():
        subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=project, env=env, check=True)
    return subprocess.run([str(BIN / "dvc"), "repro"], cwd=project, env=env, **popen)


def answer(project: Path) -> tuple[dict, dict]:
    """The handler's answer to the project's first test photo (its manifest row), with the variant recommend
    chose, as the function answers a direct invocation."""
    model = project / json.loads((project / paths.RECOMMENDATION).read_text())["model"]
    with open(project / paths.MANIFEST, newline="") as f:
        photo = next(row for row in csv.DictReader(f) if row["split"] == "test")
    from serving import handler

    handler.MODEL_PATH = model  # the module's model, loaded on its first request
    handler.model.cache_clear()
    event = {"image": base64.b64encode(Path(photo["path"]).read_bytes()).decode()}
    with contextlib.redirect_stdout(io.StringIO()):  # its one log line per request
        return photo, handler.lambda_handler(event)


def main() -> None:
    project = make_project(DEMO_DIR, small_run_params(project_dataset()))
    print(f"make demo: the small run in {project.relative_to(ROOT)}/ (dvc repro there; the full run is untouched)")
    if repro(project).returncode != 0:
        raise cli.UserError(f"dvc repro failed in {project}: its output is above")
    print((project / paths.REPORT_DIR / "summary.txt").read_text())
    photo, body = answer(project)
    print(f"The function's handler, asked about {photo['path']} (a {photo['label']}):\n{json.dumps(body)}")
    model = (project / json.loads((project / paths.RECOMMENDATION).read_text())["model"]).relative_to(ROOT)
    print(f"Serve it over HTTP: python -m pipeline.serve --model {model} (README, Serve)")


if __name__ == "__main__":
    cli.run(main)
