"""The deploy command line (pipeline/deploy/__main__.py) without AWS: a bare command prints the help and
deploys nothing, each command has its own help, unknown arguments are refused, --dry-run runs the plan, and
the Makefile's targets call the commands as they are. The commands against moto:
tests/deploy/test_deploy_commands.py."""

import re

import pytest

from pipeline import params
from pipeline.deploy import __main__ as deploy_cli
from pipeline.deploy import commands, plan, status
from support import ROOT

COMMANDS = ("deploy", "rollback", "destroy", "tune", "status", "url", "logs")


def main(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stopped:
        deploy_cli.main(argv)
    out = capsys.readouterr()
    return stopped.value.code, out.out, out.err


@pytest.fixture
def acted(monkeypatch) -> list:
    """Every command that would act, recorded instead of run."""
    calls = []
    for module, name in ((commands, "deploy"), (commands, "rollback"), (plan, "plan"), (status, "status")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: calls.append(_n))
    return calls


def test_a_bare_command_prints_the_help_and_deploys_nothing(capsys, acted):
    code, out, err = main([], capsys)
    assert code == 2 and out == "" and acted == []
    assert err.startswith("usage: python -m pipeline.deploy ")
    for name in COMMANDS:  # the whole list of commands, not argparse's one-line complaint
        assert f"\n    {name} " in err


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_its_own_help(name, capsys, acted):
    code, out, _ = main([name, "--help"], capsys)
    assert code == 0 and acted == []
    assert out.startswith(f"usage: python -m pipeline.deploy {name} ")
    assert deploy_cli.COMMANDS[name][1].splitlines()[0] in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--force"],
        ["deploy", "--yes"],
        ["destroy", "--force"],
        ["status", "extra"],
        ["bogus"],
        ["logs", "--limit", "0"],
    ],
)
def test_unknown_arguments_are_refused(argv, capsys, acted):
    code, _, err = main(argv, capsys)
    assert code == 2 and acted == [] and "error:" in err


def test_dry_run_runs_the_plan_not_the_deploy(capsys, acted, monkeypatch):
    monkeypatch.setattr(params, "load", lambda *a: None)
    deploy_cli.main(["deploy", "--dry-run"])
    deploy_cli.main(["deploy"])
    assert acted == ["plan", "deploy"]


def test_the_makefile_targets_use_the_commands_as_they_are():
    """make deploy/rollback/destroy/tune/status/logs, with every option their variables add (FORCE=1 ...)."""
    lines = re.findall(r"^\tpython -m pipeline\.deploy (.*)$", (ROOT / "Makefile").read_text(), re.M)
    commands = {line.split()[0] for line in lines}
    assert {"deploy", "rollback", "destroy", "tune", "status", "logs"} <= commands
    for line in lines:
        argv = re.sub(r"\$\(if \$\(\w+\),([^)]*)\)", r"\1", line).split()  # each variable set
        deploy_cli.parser().parse_args(argv)  # exits 2 on an argument the command does not take
