"""Mutation testing (mutmut 3) of the modules that decide what ships and what is refused, one module at a time,
each against its own selection of unit tests (tests/unit: no model, no AWS stand-in; fetch's own 127.0.0.1 servers are
in-process threads). `make mutants` runs them all; `python benchmarks/mutants.py gates fetch` runs some.

mutmut names a mutant after its file's path (`lambda/serving/fetch.py` would be `lambda.serving.fetch`) and
matches it against the running function's module (`serving.fetch`): the Lambda package only lives under a
folder that is not its import name. So each module is mutated in its own copy of the project under
.cache/mutants/<module>/, laid out flat (pipeline/ and serving/ side by side, the way the editable install
imports them), with a [tool.mutmut] section written for that module alone. The working tree is never
touched, so other work on it can go on while mutants run.

Per module it writes .cache/mutants/<module>.json (every mutant's status and diff) and prints one line:
killed / checked, survivors, mutants no selected test reaches. benchmarks/results/mutation_<date>.md reads
these, with why each survivor is equivalent or left.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "mutants"
# Files the unit tests read from the project root besides the code and the tests: events (the sample events the
# handler must accept), artifacts/tune (the tune table kept in git: test_tune reads its header; make_project,
# in pipeline/demo.py, copies it and .dockerignore into the projects a test runs a stage in).
ALSO = [
    "params.yaml", "dvc.yaml", "Makefile", "requirements.txt", "lambda", "docs", "events", "artifacts/tune",
    ".dockerignore",
]  # fmt: skip
# The tests find the data set beside the project (tests/support.py: ROOT.parent / "shared"); small_params names
# it in every params.yaml a test writes. In a staged copy ROOT is .cache/mutants/<module> (the first run, below)
# or .cache/mutants/<module>/mutants (mutmut's), so both parents get a link to the real one.
SHARED = ROOT.parent / "shared"
# Tests that pass in the staged copy but cannot run inside mutmut's: each runs a stage in a subprocess from a
# project made of the copy's code (make_project), which under mutmut is the mutated, trampolined code, and that
# code stops at once, finding no mutmut configuration in the new project. Deselected, named in the result; the
# same rules are asserted in-process by other tests of the selection.
OUTSIDE_MUTMUT = ["tests/unit/test_params.py::test_stage_with_bad_param_prints_one_line_not_a_traceback"]


# module: (source file in the staged copy, functions whose mutants count (None: all), test selection): unit tests
# (tests/unit) only, but for alarms (below). Timed fetch tests (deadlines of 1 s against slow servers) are left
# out: a mutant that slows them says nothing about the rule mutated, and they would cost seconds per mutant.
def tests(*names: str) -> list[str]:
    """The test files named test_<name>.py, in whichever folder of tests/ each is."""
    return [str(next((ROOT / "tests").glob(f"*/test_{name}.py")).relative_to(ROOT)) for name in names]


FETCH_UNTIMED = "not deadline and not slow and not resolver and not handshake"
MODULES = {
    "gates": ("pipeline/gates.py", None, tests("gates", "recommend", "own_dataset_rules")),
    "cost": ("pipeline/cost.py", None, tests("recommend", "params", "report", "tune")),
    "recommend": ("pipeline/recommend.py", None, tests("recommend", "own_dataset_rules", "targets")),
    "params": ("pipeline/params.py", None, tests("params", "arm64_refusals", "tune", "dvc_yaml", "deploy_rules")),
    "releases": (
        "pipeline/deploy/releases.py",
        None,
        tests("releases", "canary_rules", "deploy_cli", "own_dataset_rules", "deploy_rules"),
    ),
    # The alarms' queries only mean something evaluated: test_canary_judgement judges alarms.definitions with
    # the AWS stand-in's own alarm evaluator, in-process (no server), on the small run's handler.
    "alarms": ("pipeline/deploy/alarms.py", None, tests("alarms", "canary_rules", "canary_judgement")),
    "fetch": ("serving/fetch.py", None, [*tests("fetch"), "-k", FETCH_UNTIMED]),
    "images": ("serving/images.py", None, tests("images", "image_rules")),
    "handler": ("serving/handler.py", None, tests("events", "handler_rules", "function_contract_rules")),
    # data.py's rules, not its download and its stage's I/O (fetch, prepare, main).
    "data": (
        "pipeline/data.py",
        {"archive_root", "split_layout", "hidden", "find_root", "class_folders", "images_in", "chosen_classes",
         "scan", "split_counts", "split_classes", "unreadable", "check_images", "first_readable", "check_classes"},
        tests("data_rules", "own_dataset_rules"),
    ),
}  # fmt: skip


def failing(here: Path, selection: list) -> list[str]:
    """Selected tests that fail on the code as it is (work in progress elsewhere in the shared tree): mutmut
    stops at a failing test, so they are deselected and named in the result instead."""
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfE",
            "-n",
            "0",
            *selection,
        ],
        cwd=here,
        capture_output=True,
        text=True,
    )
    return sorted({line.split()[1] for line in ran.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))})


def stage(module: str, source: str, selection: list) -> tuple[Path, list[str], list[str]]:
    """A flat copy of the project for one module, with mutmut's configuration for it; the tests deselected
    (failing before mutation, and OUTSIDE_MUTMUT's)."""
    here = WORK / module
    if here.exists():
        shutil.rmtree(here)
    here.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(ROOT / "pipeline", here / "pipeline", ignore=ignore)
    shutil.copytree(ROOT / "lambda" / "serving", here / "serving", ignore=ignore)
    shutil.copytree(ROOT / "tests", here / "tests", ignore=ignore)
    for name in ALSO:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, here / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, here / name)
    for parent in (WORK, here):
        link = parent / SHARED.name
        if SHARED.is_dir() and not link.exists():
            link.symlink_to(SHARED, target_is_directory=True)
    existing = [s for s in selection if not s.startswith("tests/") or (ROOT / s).exists()]
    broken = failing(here, existing)
    outside = [test for test in OUTSIDE_MUTMUT if test.partition("::")[0] in selection and test not in broken]
    existing += [f"--deselect={test}" for test in broken + outside]
    config = {
        "source_paths": ["pipeline", "serving"],
        "only_mutate": [source],
        "also_copy": ALSO,
        # One order, no xdist: mutmut maps tests to the functions they reach once, then reruns only those.
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:cacheprovider", "-q", "--durations=0"],
        "pytest_add_cli_args_test_selection": existing,
        "use_git_change_detection": False,
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    (here / "pyproject.toml").write_text(pyproject + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n")
    return here, broken, outside


def statuses(here: Path, untested: bool) -> dict:
    """{mutant name: status} from mutmut's own records; `untested`: mutmut stopped because no selected test
    reaches any mutant, so none was checked."""
    from mutmut.stats import status_by_exit_code

    found = {}
    for meta in (here / "mutants").rglob("*.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = "no tests" if untested and code is None else status_by_exit_code[code]
    return found


DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
out = {}
for name in json.load(sys.stdin):
    lines = get_diff_for_mutant(name, path=find_mutant(name).path).splitlines()
    out[name] = "\\n".join(l for l in lines if l.startswith(("+", "-")) and l[:3] not in ("+++", "---"))
print(json.dumps(out))
"""


def diffs(here: Path, names: list) -> dict:
    """Each mutant's changed lines (one process for all: mutmut show costs seconds a mutant)."""
    if not names:
        return {}
    shown = subprocess.run(
        [sys.executable, "-c", DIFFS], cwd=here, input=json.dumps(names), capture_output=True, text=True, check=True
    )
    return json.loads(shown.stdout.strip().splitlines()[-1])


def function_of(name: str) -> str:
    """pipeline.data.x_split_counts__mutmut_3 -> split_counts; a method keeps its class: History.previous."""
    key = name.rpartition(".")[2].partition("__mutmut_")[0]
    return key[2:] if key.startswith("x_") else key.lstrip("xǁ").replace("ǁ", ".")


def run(module: str, again: bool = True) -> dict:
    """again=False: summarize the last run's records in .cache/mutants/<module>/ instead of running."""
    source, functions, selection = MODULES[module]
    here, broken, outside, seconds, log = WORK / module, [], [], None, WORK / module / "mutmut.log"
    if again:
        here, broken, outside = stage(module, source, selection)
        started = time.monotonic()
        # One worker at low priority: the machine is shared.
        done = subprocess.run(
            ["nice", "-n", "10", sys.executable, "-m", "mutmut", "run", "--max-children", "1"],
            cwd=here,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        seconds = round(time.monotonic() - started)
        log.write_text(done.stdout + done.stderr)
    else:
        done = subprocess.CompletedProcess([], 0, log.read_text() if log.exists() else "", "")
    untested = "could not find any test case for any mutant" in done.stdout
    found = statuses(here, untested)
    if (done.returncode != 0 and not untested) or not found:
        sys.exit(f"mutmut on {module} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    counted = {n: s for n, s in found.items() if functions is None or function_of(n) in functions}
    left = {n: s for n, s in counted.items() if s != "killed"}
    result = {
        "module": source,
        "mutants": len(counted),
        "killed": sum(s == "killed" for s in counted.values()),
        "survived": sorted(n for n, s in left.items() if s == "survived"),
        # Names only: mutmut show costs a process each, and no test reaching them says enough.
        "no_tests": sorted(n for n, s in left.items() if s == "no tests"),
        "other": {n: s for n, s in left.items() if s not in ("survived", "no tests")},
        "seconds": seconds,
        "deselected_failing": broken,
        "deselected_outside_mutmut": outside,
        "diffs": diffs(here, [n for n, s in left.items() if s != "no tests"]),
    }
    (WORK / f"{module}.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"some of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--summarize", action="store_true", help="read the last run's records, do not run again")
    args = parser.parse_args()
    if unknown := set(args.modules) - set(MODULES):
        parser.error(f"no such module: {', '.join(sorted(unknown))}")
    for module in args.modules or MODULES:
        r = run(module, again=not args.summarize)
        score = r["killed"] / r["mutants"] if r["mutants"] else float("nan")
        print(
            f"{module:10} {r['module']:28} killed {r['killed']:4}/{r['mutants']:<4} ({score:.0%})  survived "
            f"{len(r['survived']):3}  no tests {len(r['no_tests']):3}  other {len(r['other'])}  {r['seconds']} s"
            + (
                f"  (failing before mutation, left out: {', '.join(r['deselected_failing'])})"
                if r["deselected_failing"]
                else ""
            )
            + (
                f"  (cannot run under mutmut, left out: {', '.join(r['deselected_outside_mutmut'])})"
                if r.get("deselected_outside_mutmut")
                else ""
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
