"""Running the pipeline the way users do: `.venv/bin/dvc repro` without activating the environment, and
`make repro` with a mistyped param."""

import subprocess
import sys

import yaml

from conftest import ROOT, make_project, run, small_params


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
