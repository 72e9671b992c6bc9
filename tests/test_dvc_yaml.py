"""dvc.yaml is the map: every stage lists every module it runs and the params it reads, so that
`dvc repro` can never call itself up to date after a change to code a stage depends on."""

import ast
import re
import shutil

import pytest
import yaml

from conftest import ROOT, run

# First-party packages and where their code lives (pyproject.toml maps `serving` to lambda/serving).
PACKAGES = {"pipeline": ROOT / "pipeline", "serving": ROOT / "lambda" / "serving"}
# A module run in a child process (`python -m pipeline.bench_probe`) is named in a string.
MODULE_NAME = re.compile(r"^(pipeline|serving)(\.\w+)+$")


def module_file(name: str):
    package, *rest = name.split(".")
    folder = PACKAGES.get(package)
    if folder is None:
        return None
    path = folder.joinpath(*rest)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def modules_used(source: str) -> set[str]:
    """Every first-party module a file imports (anywhere, functions included) or runs by name."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # from pipeline import cli
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            names.add(node.value)
    return {n for n in names if module_file(n)}


def stage_code(module: str) -> set[str]:
    """The files a stage's module runs: itself, what it imports transitively, and package __init__s."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:i]))
            if path and path not in seen:
                seen.add(path)
                todo += modules_used(path.read_text())
    return {str(p.relative_to(ROOT)) for p in seen}


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def declared_deps(stage: dict) -> set[str]:
    return {d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])}


@pytest.mark.fast
@pytest.mark.parametrize("name", list(stages()))
def test_each_stage_lists_every_module_it_runs(name):
    stage = stages()[name]
    module = re.fullmatch(r"python -m (\S+)", stage["cmd"]).group(1)
    missing = stage_code(module) - declared_deps(stage)
    assert not missing, f"dvc.yaml: stage {name} runs {sorted(missing)} without listing them in deps"


@pytest.mark.fast
def test_the_walker_sees_function_level_imports_and_child_processes():
    used = stage_code("pipeline.bench")
    assert "pipeline/bench_probe.py" in used  # run as `python -m pipeline.bench_probe`
    assert "lambda/serving/handler.py" in used and "lambda/serving/fetch.py" in used  # imported inside a function
    assert "pipeline/__init__.py" in used and "lambda/serving/__init__.py" in used


@pytest.mark.fast
def test_train_depends_on_the_chosen_recipe_only():
    params = stages()["train"]["params"]
    assert "train" not in params and "train.${train.recipe}" in params and "data.download_dir" in params


def test_editing_a_module_reruns_its_stages_and_a_transfer_key_does_not_touch_train(small_run, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(small_run, project, symlinks=True)
    assert "up to date" in run(["dvc", "status"], project).stdout
    with open(project / "pipeline/files.py", "a") as f:
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], project).stdout
    for name in ("data", "train", "convert", "verify", "bench", "recommend", "report"):
        assert f"{name}:" in status, f"editing pipeline/files.py leaves stage {name} up to date:\n{status}"
    shutil.copy(small_run / "pipeline/files.py", project / "pipeline/files.py")
    with open(project / "lambda/serving/fetch.py", "a") as f:
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], project).stdout
    assert "bench:" in status and "train:" not in status and "verify:" not in status
    shutil.copy(small_run / "lambda/serving/fetch.py", project / "lambda/serving/fetch.py")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["transfer"]["epochs"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in run(["dvc", "status"], project).stdout
