"""What keeps a unit test a unit test: it may not ask for a model run or an AWS stand-in (a test that needs
one belongs in tests/stages or tests/deploy), so `make test-fast` stays seconds."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The fixtures that start a run of the pipeline or a stand-in: minutes on a fresh machine.
HEAVY_FIXTURES = ("small_run", "deploy_run", "aws", "standin_base", "registry", "handler")


def pytest_collection_modifyitems(items):
    """A unit test that asks for a heavy fixture stops the session before anything runs, naming it."""
    for item in items:
        heavy = [name for name in HEAVY_FIXTURES if name in item.fixturenames]
        if heavy and HERE in item.path.parents:
            where = "move it to tests/stages or tests/deploy"
            raise pytest.UsageError(f"{item.nodeid} asks for {', '.join(heavy)}: {where}")
