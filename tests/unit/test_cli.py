"""Stages behave like commands: --help prints what the stage does and runs nothing, an unknown argument
is refused with exit status 2, and every stage dvc.yaml runs answers both that way."""

import re
import subprocess
import sys
import types

import pytest
import yaml

from pipeline import cli
from support import ROOT


def stage_modules() -> list[str]:
    """pipeline.<stage> for each stage dvc.yaml runs."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return [re.fullmatch(r"python3 -m (\S+)", s["cmd"]).group(1) for s in stages.values()]


def never(*args):
    raise AssertionError("the stage ran")


@pytest.fixture
def as_main(monkeypatch):
    """Run cli.run as `python -m pipeline.example ARGS` would: that module is __main__."""

    def command_line(*args: str) -> None:
        module = types.ModuleType("__main__", "Stage example: one line on what it makes.")
        module.__spec__ = types.SimpleNamespace(name="pipeline.example")
        monkeypatch.setitem(sys.modules, "__main__", module)
        monkeypatch.setattr(sys, "argv", ["/somewhere/pipeline/example.py", *args])

    return command_line


def test_help_prints_the_docstring_and_runs_nothing(as_main, capsys):
    as_main("--help")
    with pytest.raises(SystemExit) as stopped:
        cli.run(never)
    assert stopped.value.code == 0
    said = capsys.readouterr().out
    assert said.startswith("usage: python -m pipeline.example") and "one line on what it makes" in said


@pytest.mark.parametrize("argument", ["--bogus-flag", "positional"])
def test_an_unknown_argument_is_refused_before_anything_runs(as_main, capsys, argument):
    as_main(argument)
    with pytest.raises(SystemExit) as stopped:
        cli.run(never)
    assert stopped.value.code == 2
    assert f"unrecognized arguments: {argument}" in capsys.readouterr().err


def test_a_main_that_reads_its_own_arguments_gets_them(as_main):
    as_main("deploy", "--force")
    ran = []
    cli.run(lambda: ran.append(sys.argv[1:]), takes_arguments=True)
    assert ran == [["deploy", "--force"]]


def test_every_stage_answers_its_command_line_through_cli_run():
    """Each stage's module ends in cli.run(main) without takes_arguments (so the checks above apply)."""
    for module in stage_modules():
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert re.search(r"^    cli\.run\(main\)$", source, re.MULTILINE), module


def test_train_help_exits_at_once_and_touches_nothing(tmp_path):
    """The one that would cost most to get wrong: a retraining. Run where no data or params exist."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "usage: python -m pipeline.train" in done.stdout, done.stderr
    assert list(tmp_path.iterdir()) == []
