"""The canary's rules without traffic or a model: the offline CloudWatch evaluator's statistics and
datapoints (lambda_proxy.statistic, the proxy's stand-in for CloudWatch), the release history's newest
entries and rejections, and a canary that cannot end before the deployer's credentials expire does not
start. The alarms judged on the handler's real EMF lines: tests/stages/test_canary_judgement.py."""

import dataclasses
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from lambda_proxy import Point, evaluate_alarm, math, statistic

from pipeline import params
from pipeline.deploy import canary, releases
from pipeline.deploy.errors import CredentialsExpiring

T0 = 1_800_000_000  # a minute's start (divisible by 60): the traffic's first minute


@pytest.fixture
def d() -> params.Deploy:
    """The checked-in deploy params (alarm_min_samples 5, alarm_periods 5, alarm_datapoints 3)."""
    return params.load().deploy


def test_the_evaluator_s_statistics_math_and_datapoints():
    assert statistic(list(range(1, 11)), "p90") == 9 and statistic([5, 1, 3, 2, 4, 9], "p90") == 9
    assert statistic([1, 2, 3, 4], "p50") == 2 and statistic([], "Average") is None
    assert statistic([0, 1, 1, 0], "Average") == 0.5 and statistic([0, 1, 1, 0], "SampleCount") == 4
    assert math("IF(n >= 5, p, 0)", {"n": 4, "p": 900}) == 0 and math("IF(n >= 5, p, 0)", {"n": 5, "p": 900}) == 900
    assert math("IF(n >= 5, p, 0)", {"n": None, "p": None}) is None  # no data: no datapoint
    assert math("FILL(e, 0) / i", {"e": None, "i": 4}) == 0 and math("live - new", {"live": 0.9, "new": None}) is None
    assert math("IF(a >= 5 AND b >= 5, b - a, 0)", {"a": 5, "b": 4}) == 0

    def minute(m, value):
        dims = frozenset({("function", "f")})
        return Point(T0 + m * 60 + 1, "ns", "M", dims, value)

    alarm = {"Namespace": "ns", "MetricName": "M", "Dimensions": [{"Name": "function", "Value": "f"}],
             "Period": 60, "Statistic": "Maximum", "EvaluationPeriods": 5, "DatapointsToAlarm": 3,
             "ComparisonOperator": "GreaterThanThreshold", "Threshold": 10,
             "TreatMissingData": "notBreaching"}  # fmt: skip
    spread = [minute(0, 11), minute(2, 11), minute(3, 1), minute(5, 11), minute(6, 11)]  # breaching: 0, 2, 5, 6
    assert evaluate_alarm(alarm, spread, T0 + 4 * 60)[0] == "OK"  # minutes 0-4: two breach
    assert evaluate_alarm(alarm, spread, T0 + 5 * 60 + 59)[0] == "OK"  # minutes 1-5: two (0 is out)
    assert evaluate_alarm(alarm, spread, T0 + 6 * 60)[0] == "ALARM"  # minutes 2-6: three
    assert evaluate_alarm({**alarm, "DatapointsToAlarm": 4}, spread, T0 + 6 * 60)[0] == "OK"
    assert evaluate_alarm({**alarm, "TreatMissingData": "breaching"}, spread, T0 + 5 * 60)[0] == "ALARM"  # 1, 4 too
    assert evaluate_alarm({**alarm, "TreatMissingData": "missing"}, [], T0)[0] == "INSUFFICIENT_DATA"
    assert evaluate_alarm(alarm, [], T0)[0] == "OK"


def test_the_history_keeps_its_newest_entries_and_every_rejection_it_can():
    """The alias description holds 256 characters: the oldest live entries go first, then the oldest
    rejections."""
    long = releases.History(list(range(1, 101)), [3, 7, 11])
    kept = releases.read({"Description": long.text()})
    assert len(long.text()) <= 256 and kept.rejected == [3, 7, 11]
    assert kept.live == list(range(101 - len(kept.live), 101)) and len(kept.live) > 30  # the newest, in order
    many = releases.History(list(range(1, 101)), list(range(200, 300)), canary=301)
    kept = releases.read({"Description": many.text()})
    assert len(many.text()) <= 256 and kept.live == [99, 100] and kept.canary == 301
    assert kept.rejected == list(range(300 - len(kept.rejected), 300)) and len(kept.rejected) > 30


def test_a_canary_that_cannot_end_before_the_credentials_expire_does_not_start(d, monkeypatch):
    canary_d = dataclasses.replace(d, strategy="canary", canary_minutes=5, watch_after_minutes=2, watch_every_s=15)
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    needed = 5 * 60 + 2 * 60 + 15 + 120  # its minutes, the late metrics' wait, one more read, the roll-back
    with pytest.raises(CredentialsExpiring) as refused:
        canary.require_time(canary_d, now + timedelta(seconds=needed - 1), now)
    assert "the AWS credentials expire in 9:14 (at 12:09:14 UTC); the canary needs 9:15" in str(refused.value)
    canary.require_time(canary_d, now + timedelta(seconds=needed), now)
    canary.require_time(canary_d, None, now)  # credentials that do not expire
    # Where the expiry comes from: botocore's credentials (here an STS session in the environment).
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    assert canary.credentials_expiry(boto3.Session()) is None
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2030-01-01T10:00:00Z")
    assert canary.credentials_expiry(boto3.Session()) == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
