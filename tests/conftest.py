"""Fixtures and hooks for the whole suite: the real data set, the two shared runs (the small run's Xception,
the tiny model's deploy run), the --small-run-dir option, and the order pytest-xdist hands files out in.
The tests come in three kinds, a folder each: unit/ (the code's rules on inputs made in the test: no model
trained or loaded, no AWS stand-in; seconds), stages/ (the pipeline's stages run for real, most on the small
run) and deploy/ (deploy's commands against the stand-ins in standins/). Helpers are in support.py."""

import collections
import os
from pathlib import Path

import pytest

from support import SHARED_DATASET, TESTS, build_deploy_run, build_small_run, shared_run

# debootstrap lives in /usr/sbin, which a minimal PATH (env -i, some CI runners) leaves out.
os.environ["PATH"] = os.pathsep.join([os.environ["PATH"], "/usr/sbin", "/sbin"])


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The real photos, or a loud failure: a suite that quietly swapped them for generated images
    would prove nothing about the product."""
    if not SHARED_DATASET.is_dir():
        pytest.fail(f"the clothing data set is not at {SHARED_DATASET}: see README.md, Set up")
    return SHARED_DATASET


def pytest_addoption(parser):
    parser.addoption(
        "--small-run-dir",
        type=Path,
        help="development only: build the small dvc repro run in this folder once and reuse it in later "
        "sessions (a run left from older stage code hides changes to the stages; CI never passes it)",
    )


# The kinds in the order the suite hands out their files (within each group below): a long file handed out
# last is a tail the other workers wait out. Deploy files take a minute or more each (servers, images),
# stage files tens of seconds, unit files seconds.
KINDS = ("deploy", "stages", "unit")


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, whose order it keeps within each group
def pytest_collection_modifyitems(items):
    """pytest-xdist hands whole files to its workers in this order (make test passes --no-loadscope-reorder,
    else xdist puts the files with the most tests first): one file that needs the small run, so that its
    worker starts building the run (minutes) at once, then every file that does not need it, which the
    other workers work through meanwhile, then the rest; within each group by kind (KINDS). What needs the
    small run is a test's fixtures, not its folder. The runs behind each rule: docs/toolchain.md,
    Measurements behind the code's rules."""
    waits = {i.path for i in items if "small_run" in i.fixturenames or i.get_closest_marker("small_run_model")}
    # Not a deploy file where one can be had: a deploy test's fixtures build the Lambda-like base image
    # (minutes) before the small run, and any test of the file may be its first.
    # And the file with the most tests: a worker is handed its next file as soon as two or fewer of its tests
    # are left, so a small starter file would take the next one onto the worker that builds the run, behind
    # it, while the others wait for the run with nothing to do.
    tests = collections.Counter(item.path for item in items)
    candidates = (i for i in items if "small_run" in i.fixturenames)
    starter = min(candidates, key=lambda i: (kind(i) == "deploy", -tests[i.path]), default=None)
    first = starter and starter.path
    group = {item.path: 0 if item.path == first else 2 if item.path in waits else 1 for item in items}
    # Within its file the starter goes first: the file's other tests may be slow ones that need no small run.
    items.sort(key=lambda item: (group[item.path], KINDS.index(kind(item)), item is not starter))


def kind(item) -> str:
    """The test's kind: the folder under tests/ it is in."""
    return item.path.relative_to(TESTS).parts[0]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, dataset_dir, request) -> Path:
    """A real, briefly trained model and every artifact the pipeline makes from it (build_small_run)."""
    folder = request.config.getoption("--small-run-dir")
    return shared_run("small-run", build_small_run, tmp_path_factory, dataset_dir, folder)


@pytest.fixture(scope="session")
def deploy_run(tmp_path_factory, dataset_dir) -> Path:
    """A tiny model's finished run (build_deploy_run): what the deploy tests ship."""
    return shared_run("deploy-run", build_deploy_run, tmp_path_factory, dataset_dir)
