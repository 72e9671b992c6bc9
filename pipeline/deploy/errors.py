"""The deploy's own refusals, each a UserError (one line, exit 2) of its own type, so tests and
callers can tell them apart without matching their words."""

from pipeline.cli import UserError


class DeployLocked(UserError):
    """Another deploy of the same function holds its lock (pipeline/deploy/lock.py)."""


class CredentialsExpiring(UserError):
    """The AWS credentials expire before a canary could finish and roll back (canary.require_time)."""


class LabelsChanged(UserError):
    """The live version answers with other labels than the model to ship (commands.guard_labels)."""


class AccuracyDropped(UserError):
    """The model to ship scored worse at verify than the live one, beyond deploy.max_accuracy_drop."""


class VersionRejected(UserError):
    """A version with this code and configuration was rolled back from: not made live again."""


class CanaryRunning(UserError):
    """A version takes a share of 'live' under its alarms: no second deploy until it ends."""


class VariantExcluded(UserError):
    """The variant was excluded at verify, or on the deploy's architecture by the targets stage."""


class SmokeTestFailed(UserError):
    """The function (image, zip or version in AWS) did not answer the smoke photo as expected."""


class NothingToRollBack(UserError):
    """No 'live' alias, or no earlier live version that was not rolled back from."""
