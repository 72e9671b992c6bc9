"""The deploy's own refusals, each a UserError (one line, exit 2) of its own type, so tests and
callers can tell them apart without matching their words."""

from pipeline.cli import UserError


class DeployLocked(UserError):
    """Another deploy of the same function holds its lock (pipeline/deploy/lock.py)."""


class CredentialsExpiring(UserError):
    """The AWS credentials expire before a canary could finish and roll back (canary.require_time)."""
