"""Running the pipeline the way users do: `.venv/bin/dvc repro` without activating the environment, and
`make repro` with a mistyped param."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from pipeline import demo
from support import ROOT, make_project, run, small_params


def test_a_stage_started_by_another_python_runs_under_the_projects(tmp_path, dataset_dir):
    """dvc.yaml's `python3` outside the activated environment is another interpreter: the stage starts
    again under the project's .venv and says so (the base interpreter here has none of the venv's packages)."""
    project = make_project(tmp_path / "p", small_params(dataset_dir))
    (project / ".venv").symlink_to(ROOT / ".venv")
    other = sys._base_executable  # the interpreter the venv was made from
    result = subprocess.run([other, "-m", "pipeline.params"], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"running {project / '.venv/bin/python'} instead" in result.stderr
    assert result.stdout == "params.yaml: OK\n"


def test_the_target_probe_stays_under_the_python_that_started_it(tmp_path, dataset_dir):
    """The targets stage runs its probe under the arm64 Python on purpose: started again under .venv's
    x86_64 one, it imported the arm64 wheels and every variant was excluded on arm64."""
    project = make_project(tmp_path / "p", small_params(dataset_dir))
    (project / ".venv").symlink_to(ROOT / ".venv")
    np.save(tmp_path / "photos.npy", np.zeros((1, 8, 8, 3), np.float32))
    job = {"photos": str(tmp_path / "photos.npy"), "out": str(tmp_path), "variants": {}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    env = {"PYTHONPATH": f"{project}:{project / 'lambda'}"}
    # As the stage starts it: `python -m pipeline.target_probe JOB` (sys.orig_argv is what the rule reads).
    result = subprocess.run([sys._base_executable, "-m", "pipeline.target_probe", str(tmp_path / "job.json")],
                            cwd=project, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "instead" not in result.stderr, result.stderr


def test_importing_the_package_from_another_python_never_reexecutes(tmp_path, dataset_dir):
    project = make_project(tmp_path / "p", small_params(dataset_dir))
    (project / ".venv").symlink_to(ROOT / ".venv")
    code = "import sys, pipeline; print(sys.prefix)"
    result = subprocess.run([sys._base_executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == sys.base_prefix and not result.stderr


def test_a_bad_param_stops_make_repro_before_dvc_removes_anything(tmp_path, dataset_dir):
    """The check runs before dvc repro in make repro's recipe, and refuses in one line."""
    recipe = run(["make", "-n", "repro", f"VENV={ROOT / '.venv'}"], ROOT).stdout.splitlines()
    assert recipe.index("python -m pipeline.params") < recipe.index("dvc repro")
    data = small_params(dataset_dir)
    data["train"]["scratch"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    result = run([sys.executable, "-m", "pipeline.params"], tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: params.yaml: 'train.scratch.epochs' must be at least 1, got 0\n"


def test_a_bare_make_lists_every_target_and_runs_nothing():
    """`make` alone is help: the full run (half an hour and more of training) is asked for by name."""
    makefile = (ROOT / "Makefile").read_text()
    phony = set(" ".join(re.findall(r"^\.PHONY: (.*)$", makefile, re.M)).split())
    listed = {line.split()[0] for line in run(["make", "--no-print-directory"], ROOT).stdout.splitlines()[1:]}
    assert phony <= listed, f"targets make help leaves out: {sorted(phony - listed)}"
    would_run = run(["make", "-n", "--no-print-directory"], ROOT).stdout
    assert "dvc" not in would_run and "pip" not in would_run and "pytest" not in would_run


def test_the_demo_answers_a_real_test_photo_with_the_recommended_variant(small_run):
    """make demo's last step, on the suite's small run (the demo's own configuration): the handler's answer."""
    photo, body = demo.answer(small_run)
    recommended = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())["variant"]
    assert photo["split"] == "test" and Path(photo["path"]).is_file()
    labels = json.loads((small_run / "data/labels.json").read_text())["labels"]
    assert body["model"]["variant"] == recommended and body["top"] in labels
    assert sorted(p["label"] for p in body["predictions"]) == sorted(labels)
