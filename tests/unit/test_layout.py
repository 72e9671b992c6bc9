"""The suite's layout holds: a unit test that asks for a model run or an AWS stand-in stops the session
before anything runs (tests/unit/conftest.py); the same test in another folder runs."""

import shutil

import pytest

from support import TESTS

pytest_plugins = ["pytester"]

ASKS_FOR_THE_RUN = "def test_reads_the_run(small_run):\n    assert small_run == 'built'\n"


@pytest.fixture
def suite(pytester):
    """A suite laid out as this one, its unit folder under the real guard, small_run a stand-in fixture."""
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef small_run():\n    return 'built'\n")
    for kind in ("unit", "stages"):
        pytester.mkdir(kind)
    shutil.copy(TESTS / "unit" / "conftest.py", pytester.path / "unit" / "conftest.py")
    return pytester


def test_a_unit_test_asking_for_the_small_run_stops_the_session_naming_it(suite):
    (suite.path / "unit" / "test_rule.py").write_text(ASKS_FOR_THE_RUN + "def test_plain():\n    pass\n")
    result = suite.runpytest("-p", "no:randomly", "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unit/test_rule.py::test_reads_the_run asks for small_run: move it to tests/stages*"])


def test_the_same_test_among_the_stage_tests_runs(suite):
    (suite.path / "stages" / "test_rule.py").write_text(ASKS_FOR_THE_RUN)
    (suite.path / "unit" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    suite.runpytest("-p", "no:randomly", "-p", "no:xdist").assert_outcomes(passed=2)
