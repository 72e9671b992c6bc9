"""dvc.yaml is the map: every stage lists every module it runs and the params it reads, so that
`dvc repro` can never call itself up to date after a change to code a stage depends on."""

import ast
import json
import re
import shutil

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run
from pipeline import paths, recommend, variants

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
    module = re.fullmatch(r"python3 -m (\S+)", stage["cmd"]).group(1)
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


def declared_outs() -> list[str]:
    """Every path a stage writes (outs and metrics), as dvc.yaml names them."""
    return [
        out if isinstance(out, str) else next(iter(out))
        for stage in stages().values()
        for key in ("outs", "metrics")
        for out in stage.get(key, [])
    ]


@pytest.mark.fast
def test_a_run_leaves_git_clean():
    """Every stage output is DVC's (cached, restorable with `dvc checkout`), ignored by git and not in it:
    a run changes no tracked file."""
    outs = declared_outs()
    assert outs and all(isinstance(out, str) for stage in stages().values() for out in stage.get("outs", []))
    tracked = run(["git", "ls-files", "--", *outs], ROOT).stdout.split()
    assert not tracked, f"stage outputs tracked by git (a run would modify them): {tracked}"
    ignored = run(["git", "check-ignore", "--no-index", "--", *outs], ROOT, check=False).stdout.split()
    assert sorted(ignored) == sorted(outs), f"not ignored by git: {sorted(set(outs) - set(ignored))}"


def test_metrics_show_is_the_headline_and_fits_a_terminal(tmp_path):
    """`dvc metrics show` prints one file, the shipped variant's numbers, within 120 columns even for the
    longest variant name and the widest numbers their rounding leaves."""
    declared = [m for stage in stages().values() for m in stage.get("metrics", [])]
    assert declared == [paths.HEADLINE]
    variant = max(variants.NAMES, key=len)
    verify = {variant: {"accuracy": 0.123456789, "agreement": 0.987654321}}
    results = pd.DataFrame(
        [{"p50_ms": 1234.56789, "cold_start_s": 12.3456789, "size_mb": 123.456789, "usd_per_million": 12.3456789}],
        index=[variants.bench_row(variant)],
    )
    numbers = recommend.headline(variant, verify, results)
    (tmp_path / "artifacts").mkdir()
    (tmp_path / paths.HEADLINE).write_text(json.dumps(numbers))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"metrics": declared}))
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    shown = run(["dvc", "metrics", "show"], tmp_path).stdout.splitlines()
    assert shown[0].split() == ["Path", *sorted(numbers)]
    assert variant in shown[1] and max(map(len, shown)) <= 120, "\n".join(shown)


@pytest.mark.fast
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
