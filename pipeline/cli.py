"""How every stage starts and fails: one readable line for a user's mistake, never a traceback wall."""

import logging
import sys


class UserError(Exception):
    """Something the user can fix: a param, a path, a URL, a file. The message says how."""


def run(main) -> None:
    """Run a stage's main(); user errors print one line and exit 2."""
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
