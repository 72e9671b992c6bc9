"""Deploy's refusals have types of their own (pipeline/deploy/errors.py), each still a UserError: one
line and exit status 2 through pipeline/cli.py, with the words it always had."""

import dataclasses
from pathlib import Path

import pytest

from pipeline import cli, params
from pipeline.deploy import commands, errors, releases, smoke
from support import ROOT

DEPLOY = params.load(ROOT / "params.yaml").deploy


def live_scoring(accuracy: float) -> dict:
    text = releases.describe("k" * 20, "c" * 12, "full_int8", accuracy, "aws", "a.jpg", "top", ["top", "bottom"])
    return {"Version": "3", "Description": text}


def test_every_refusal_goes_through_the_user_error_channel():
    refusals = [c for c in vars(errors).values() if isinstance(c, type) and c.__module__ == errors.__name__]
    assert {c.__name__ for c in refusals} >= {
        "LabelsChanged", "AccuracyDropped", "VersionRejected", "CanaryRunning", "VariantExcluded",
        "SmokeTestFailed", "NothingToRollBack",
    }  # fmt: skip
    assert all(issubclass(c, cli.UserError) for c in refusals)


def test_a_variant_that_scored_lower_than_live_beyond_the_margin_is_refused_by_type():
    d = dataclasses.replace(DEPLOY, max_accuracy_drop=0.01)
    commands.guard_accuracy(d, live_scoring(0.80), "full_int8", 0.795, force=False)  # within the margin
    with pytest.raises(errors.AccuracyDropped) as refused:
        commands.guard_accuracy(d, live_scoring(0.80), "full_int8", 0.7899, force=False)
    assert str(refused.value) == (
        "full_int8 scored 0.7899 at verify, the live version 3 scored 0.8000 (more than "
        "deploy.max_accuracy_drop 0.01 lower): deploy --force ships it anyway"
    )
    commands.guard_accuracy(d, live_scoring(0.80), "full_int8", 0.5, force=True)


def test_a_wrong_smoke_answer_is_refused_by_type():
    smoke.check({"top": "top"}, Path("a.jpg"), "top")
    with pytest.raises(errors.SmokeTestFailed, match="a.jpg answered bottom where top was expected; nothing was"):
        smoke.check({"top": "bottom"}, Path("a.jpg"), "top")
