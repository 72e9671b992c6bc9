"""dvc.yaml is the map: every stage lists every module it runs and the params it reads, so that
`dvc repro` can never call itself up to date after a change to code a stage depends on.
The map at work on the small run (an edit reruns its stages): tests/stages/test_dvc_yaml_stage.py."""

import ast
import re

import pandas as pd
import pytest
import yaml

from pipeline import recommend
from support import ROOT, run

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


@pytest.mark.parametrize("name", list(stages()))
def test_each_stage_lists_every_module_it_runs(name):
    stage = stages()[name]
    module = re.fullmatch(r"python3 -m (\S+)", stage["cmd"]).group(1)
    missing = stage_code(module) - declared_deps(stage)
    assert not missing, f"dvc.yaml: stage {name} runs {sorted(missing)} without listing them in deps"


def test_the_walker_sees_function_level_imports_and_child_processes():
    used = stage_code("pipeline.bench")
    assert "pipeline/bench_probe.py" in used  # run as `python -m pipeline.bench_probe`
    assert "lambda/serving/handler.py" in used and "lambda/serving/fetch.py" in used  # imported inside a function
    assert "pipeline/__init__.py" in used and "lambda/serving/__init__.py" in used


def test_train_depends_on_the_chosen_recipe_only():
    params = stages()["train"]["params"]
    assert "train" not in params and "train.${train.recipe}" in params and "data.download_dir" in params


def declared_outs() -> list[str]:
    """Every path a stage writes (outs and metrics), as dvc.yaml names them."""
    return [
        out if isinstance(out, str) else next(iter(out))
        for stage in stages().values()
        for key in ("outs", "metrics")
        for out in stage.get(key, [])
    ]


def test_a_run_leaves_git_clean():
    """Every stage output is DVC's (cached, restorable with `dvc checkout`), ignored by git and not in it:
    a run changes no tracked file."""
    outs = declared_outs()
    assert outs and all(isinstance(out, str) for stage in stages().values() for out in stage.get("outs", []))
    tracked = run(["git", "ls-files", "--", *outs], ROOT).stdout.split()
    assert not tracked, f"stage outputs tracked by git (a run would modify them): {tracked}"
    ignored = run(["git", "check-ignore", "--no-index", "--", *outs], ROOT, check=False).stdout.split()
    assert sorted(ignored) == sorted(outs), f"not ignored by git: {sorted(set(outs) - set(ignored))}"


def test_the_headline_is_the_shipped_variants_own_row():
    verify = {"onnx_int8": {"accuracy": 0.79301, "agreement": 0.98391}, "full_int8": {"accuracy": 0.5, "agreement": 0}}
    results = pd.DataFrame(
        {"p50_ms": [10.2749, 3.0], "cold_start_s": [0.35721, 0.1], "size_mb": [20.571, 21.0],
         "usd_per_million": [2.1349, 1.0]},
        index=["onnx_int8", "full_int8"],
    )  # fmt: skip
    assert recommend.headline("onnx_int8", verify, results) == {
        "variant": "onnx_int8", "accuracy": 0.793, "agreement": 0.9839, "p50_ms": 10.27, "cold_start_s": 0.357,
        "size_mb": 20.57, "usd_million": 2.135,
    }  # fmt: skip
