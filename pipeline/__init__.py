"""clothes-serverless pipeline stages. Run one with `python -m pipeline.<stage>`, all with `dvc repro`."""

import os
import sys
from pathlib import Path

# TensorFlow reads these when it is first imported; quiet its C++ start-up chatter in stage logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


# Run by the function's runtime on purpose: the targets stage starts its probe under the arm64 Python
# (qemu); started again under .venv's x86_64 Python, it would import the arm64 wheels and fail. Names in
# this package, not "pipeline.<name>" strings: test_dvc_yaml reads such a string as a module the
# importing stage runs, and every stage imports this file.
FOREIGN = ("target_probe",)


def run_under_the_projects_interpreter() -> None:
    """dvc.yaml runs `python -m pipeline.<stage>` from PATH. Run as `.venv/bin/dvc repro` without the
    environment activated, that is another Python, without the project's packages (and DVC has already
    removed the stage's outputs). So a stage started by another interpreter while the project's .venv
    exists starts again under .venv's, saying so in one line. Only `python -m pipeline...` runs (argv[0]
    is "-m" while runpy finds the module): importing the package from elsewhere never re-executes, and
    neither does a module in FOREIGN, run by another Python on purpose."""
    venv = Path(__file__).resolve().parents[1] / ".venv"
    python = venv / "bin" / "python"
    if sys.argv[:1] != ["-m"] or not python.exists() or Path(sys.prefix).resolve() == venv.resolve():
        return
    started = sys.orig_argv[sys.orig_argv.index("-m") + 1]  # `python [options] -m <module> ...`
    if started.removeprefix(f"{__name__}.") in FOREIGN:
        return
    print(f"pipeline: {sys.executable} is not the project's Python; running {python} instead", file=sys.stderr)
    sys.stderr.flush()
    os.execv(python, [str(python), *sys.orig_argv[1:]])


run_under_the_projects_interpreter()
