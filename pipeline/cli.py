"""How every stage starts and fails: one readable line for a user's mistake, never a traceback wall."""

import argparse
import logging
import sys


class UserError(Exception):
    """Something the user can fix: a param, a path, a URL, a file. The message says how."""


def refuse_arguments() -> None:
    """A stage takes no arguments (params.yaml holds every knob): --help prints the module's docstring
    and exits 0 before anything runs; any other argument is refused with exit status 2 (argparse's)."""
    module = sys.modules["__main__"]
    spec = getattr(module, "__spec__", None)
    argparse.ArgumentParser(
        prog=f"python -m {spec.name}" if spec else sys.argv[0],
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Takes no arguments: every knob is in params.yaml (dvc repro runs the stages in order).",
    ).parse_args()


def run(main, takes_arguments: bool = False) -> None:
    """Run a stage's main(); user errors print one line and exit 2. A main that reads the command line
    itself says so (takes_arguments); for the others --help and unknown arguments are answered here."""
    if not takes_arguments:
        refuse_arguments()
    sys.stdout.reconfigure(line_buffering=True)  # progress reaches dvc's log as it happens
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: no artifact was half-written", file=sys.stderr)
        sys.exit(130)
