"""A pytest plugin that says where make test's minutes go: each test's CPU time (its worker's and the
subprocesses' it waited for, fixtures included) beside its wall time, and at the end the files that took
the most CPU. With pytest-xdist each worker writes its own lines; the main process sums them. Not counted:
containers (podman's conmon is no child); a server that a module or session fixture starts (moto, the
registry, dockerd) counts where it is stopped and waited for, in the test whose teardown does it.

    make test PYTEST_ADDOPTS="-p cpu_per_test --cpu-log=/tmp/cpu" PYTHONPATH=benchmarks
"""

import os
import resource
import time
from collections import defaultdict
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-log", type=Path, help="an empty folder for each worker's lines (appended): test, wall s, CPU s, start"
    )


def pytest_configure(config):
    folder = config.getoption("--cpu-log")
    if folder and not os.environ.get("PYTEST_XDIST_WORKER") and any(folder.glob("*.tsv")):
        raise pytest.UsageError(f"--cpu-log {folder} holds an earlier run's lines: give an empty folder")


def cpu_seconds() -> float:
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    folder = item.config.getoption("--cpu-log")
    start, cpu = time.time(), cpu_seconds()
    yield
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(folder / f"{worker}.tsv", "a") as f:
            f.write(f"{item.nodeid}\t{time.time() - start:.1f}\t{cpu_seconds() - cpu:.1f}\t{start:.0f}\n")


def pytest_terminal_summary(terminalreporter, config):
    folder = config.getoption("--cpu-log")
    if not folder or os.environ.get("PYTEST_XDIST_WORKER") or not folder.is_dir():
        return
    cpu, wall = defaultdict(float), defaultdict(float)
    for log in folder.glob("*.tsv"):
        for line in log.read_text().splitlines():
            if line.count("\t") != 3:  # a worker killed mid-line
                continue
            test, seconds, used, _ = line.split("\t")
            name = test.split("::")[0]
            cpu[name] += float(used)
            wall[name] += float(seconds)
    terminalreporter.section(f"CPU per file ({sum(cpu.values()):.0f} s in all)")
    for name in sorted(cpu, key=cpu.get, reverse=True)[:15]:
        terminalreporter.write_line(f"{cpu[name]:7.1f} s CPU {wall[name]:7.1f} s wall  {name}")
