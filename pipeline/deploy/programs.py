"""The programs deploy runs (pip, the container engine, docker): a failure is one line, the program's
last words, through the UserError channel."""

import subprocess

from pipeline import cli


def sh(*cmd: str, what: str, stdin: "str | None" = None, env: "dict | None" = None) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, input=stdin, env=env)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
        raise cli.UserError(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")
    return result.stdout
