"""What a canary's alarms decide on the traffic a canary really gets, and the release guards around
it, without a deploy: the alarms deploy writes (alarms.definitions) judged by the proxy's offline
CloudWatch evaluator (lambda_proxy.evaluate_alarm) over EMF lines the handler's own metrics module
writes, minute by minute; the evaluator itself; the lock, the roll-back and the credentials rule
against moto in-process.

The traffic: a 10% canary of an API at 60 requests a minute gives the new version 6 a minute and
the live one 54. A new version serves from new execution environments: each one's first request
carries the runtime's start and the model's load (~3 s), and every request's whole time carries the
client's URL fetch (0.2-0.7 s). The photos differ between the versions and between minutes."""

import json
from datetime import UTC, datetime, timedelta

import boto3
import botocore.exceptions
import pytest
from lambda_proxy import HARD, PHOTOS, Context, emf_points, emf_traffic, evaluate_alarm, statistic
from moto import mock_aws

from pipeline import params
from pipeline.deploy import alarms, canary, lock, releases
from pipeline.deploy.errors import DeployLocked
from serving import metrics

FUNCTION, VARIANT = "clothes-classifier", "full_int8"
T0 = 1_800_000_000  # a minute's start (divisible by 60): the traffic's first minute
EXPIRED = "The security token included in the request is expired"  # AWS's words


@pytest.fixture
def d() -> params.Deploy:
    """The checked-in deploy params (alarm_min_samples 5, alarm_periods 5, alarm_datapoints 3)."""
    return params.load().deploy


def traffic(version: str, minutes: int, per_minute: int, cold_per_minute: int = 0, **fields) -> list[dict]:
    return emf_traffic(FUNCTION, version, VARIANT, T0, minutes, per_minute, cold_per_minute, **fields)


def states(definitions: list[dict], documents: list[dict], minutes: int) -> dict[str, list[str]]:
    """Each alarm's state at the end of each minute, as CloudWatch would set it."""
    points = [p for doc in documents for p in emf_points(doc)]
    return {
        a["AlarmName"].rsplit("-v2-", 1)[1]: [evaluate_alarm(a, points, T0 + m * 60 + 59)[0] for m in range(minutes)]
        for a in definitions
    }


def test_a_good_version_with_cold_starts_and_harder_photos_for_a_minute_trips_no_alarm(d):
    """6 requests a minute, 2 of them each minute from new environments (p90 of the whole request is
    then a cold start every minute), and one minute whose six photos are all hard ones (its mean
    top-class probability 0.2 below the live version's)."""
    hard_minute = {"probability": lambda m, i: HARD[i] if m == 3 else PHOTOS[(m * 6 + i) % 10]}
    new = traffic("2", 7, 6, cold_per_minute=2, **hard_minute)
    live = traffic("1", 7, 54)
    judged = states(alarms.definitions(d, ("2", VARIANT), ("1", VARIANT)), new + live, 7)
    assert judged == {kind: ["OK"] * 7 for kind in alarms.KINDS}
    # What the evidence held: the whole request's p90 is a cold start every minute, and minute 3's
    # probabilities are 0.2 below the live version's: the datapoints the old one-minute alarms fired on.
    whole = [p.value for p in (p for doc in new[:6] for p in emf_points(doc)) if p.metric == "Latency"]
    assert statistic(whole, "p90") == 3400.0
    assert sum(PHOTOS) / 10 - sum(HARD) / 6 > d.alarm_probability_drop


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("server-errors", {"status": lambda m, i: 500}),
        ("p90-latency", {"inference_ms": lambda m, i: 1500.0}),  # truly slower: the model itself, warm
        ("confidence", {"probability": lambda m, i: HARD[i]}),  # every minute: a worse model
    ],
)
def test_a_bad_version_trips_its_alarm_on_the_third_breaching_minute(d, kind, fields):
    new = traffic("2", 4, 6, cold_per_minute=1, **fields)
    judged = states(alarms.definitions(d, ("2", VARIANT), ("1", VARIANT)), new + traffic("1", 4, 54), 4)
    assert judged[kind] == ["OK", "OK", "ALARM", "ALARM"]  # 3 of 5 minutes breaching: from the third on
    assert [k for k, s in judged.items() if s != ["OK"] * 4] == [kind]
    assert (kind in alarms.REJECTING) == (kind == "server-errors")


def test_too_little_evidence_never_trips_an_alarm(d):
    """A version that answers every request 5xx, 4 requests a minute (fewer than alarm_min_samples 5):
    no minute is judged, so nothing fires; deploy.min_canary_requests is what refuses too few."""
    new = traffic("2", 6, 4, status=lambda m, i: 500)
    judged = states(alarms.definitions(d, ("2", VARIANT), ("1", VARIANT)), new + traffic("1", 6, 54), 6)
    assert judged["server-errors"] == ["OK"] * 6
    five = traffic("2", 3, 5, status=lambda m, i: 500)  # the same at 5 a minute is judged
    assert states(alarms.definitions(d, ("2", VARIANT), None), five, 3)["server-errors"][-1] == "ALARM"


def test_the_confidence_alarm_s_queries(d):
    """Literally: a query of a metric nobody writes (or of the wrong variant) would keep it OK forever."""
    found = {a["AlarmName"]: a for a in alarms.definitions(d, ("2", "full_int8"), ("1", "float32"))}
    confidence = found[f"{FUNCTION}-v2-confidence"]

    def stat(version, variant, statistic):
        dims = [{"Name": "function", "Value": FUNCTION}, {"Name": "version", "Value": version},
                {"Name": "variant", "Value": variant}]  # fmt: skip
        metric = {"Namespace": "clothes-serverless", "MetricName": "TopProbability", "Dimensions": dims}
        return {"Metric": metric, "Period": 60, "Stat": statistic}

    assert confidence["Metrics"] == [
        {"Id": "new", "MetricStat": stat("2", "full_int8", "Average"), "ReturnData": False},
        {"Id": "new_answers", "MetricStat": stat("2", "full_int8", "SampleCount"), "ReturnData": False},
        {"Id": "live", "MetricStat": stat("1", "float32", "Average"), "ReturnData": False},
        {"Id": "live_answers", "MetricStat": stat("1", "float32", "SampleCount"), "ReturnData": False},
        {
            "Id": "drop",
            "Expression": "IF(new_answers >= 5 AND live_answers >= 5, live - new, 0)",
            "Label": "probability drop",
            "ReturnData": True,
        },
    ]
    for alarm in found.values():
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3)
        assert (alarm["TreatMissingData"], alarm["ComparisonOperator"]) == ("notBreaching", "GreaterThanThreshold")
    assert (confidence["Threshold"], found[f"{FUNCTION}-v2-p90-latency"]["Threshold"]) == (0.1, 1000)
    # No live version of this deployer's: no confidence alarm.
    assert [a["AlarmName"] for a in alarms.definitions(d, ("2", "full_int8"), None)] == [
        f"{FUNCTION}-v2-server-errors", f"{FUNCTION}-v2-p90-latency", f"{FUNCTION}-v2-function-errors",
    ]  # fmt: skip


def test_every_alarm_queries_what_the_real_handler_writes(d, handler, photo):
    """Each of the function's own metrics an alarm queries (namespace, name, dimensions and their
    values) has data in the EMF lines the handler writes for a request to each version."""
    import base64
    import contextlib
    import io

    written = io.StringIO()
    with contextlib.redirect_stdout(written):
        for version in ("2", "1"):
            handler.lambda_handler({"image": base64.b64encode(photo).decode()}, Context(FUNCTION, version))
    documents = [json.loads(line) for line in written.getvalue().splitlines()]
    points = [p for doc in documents for p in emf_points(doc) if p.namespace == metrics.NAMESPACE]
    assert len(documents) == 2 and points
    queried = 0
    for alarm in alarms.definitions(d, ("2", VARIANT), ("1", VARIANT)):
        for query in alarm["Metrics"]:
            metric = query.get("MetricStat", {}).get("Metric")
            if metric is None or metric["Namespace"] == alarms.LAMBDA_NAMESPACE:  # Lambda's own: not the handler's
                continue
            dims = frozenset((x["Name"], x["Value"]) for x in metric["Dimensions"])
            matching = [p for p in points if (p.namespace, p.metric, p.dimensions) == (
                metric["Namespace"], metric["MetricName"], dims)]  # fmt: skip
            assert matching, f"{alarm['AlarmName']} queries {metric}, which no line the handler wrote has"
            queried += 1
    assert queried == 8  # server-errors 2, p90-latency 2, confidence 4


@pytest.fixture(scope="module")
def function():
    """moto in-process, once for the module: the function with versions 1 and 2."""
    d = params.load().deploy
    with mock_aws():
        lam, cw = boto3.client("lambda", region_name=d.region), boto3.client("cloudwatch", region_name=d.region)
        role = boto3.client("iam", region_name=d.region).create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        lam.create_function(FunctionName=d.function_name, Runtime="python3.12", Handler="h.h",
                            Role=role["Role"]["Arn"], Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})  # fmt: skip
        for _ in range(2):
            lam.publish_version(FunctionName=d.function_name)
            lam.update_function_configuration(FunctionName=d.function_name, MemorySize=256)
        yield lam, cw


@pytest.fixture
def lam_cw(d, function):
    """'live' on version 1 and a canary routing version 2 10% (the history marks it); no lock, no alarm."""
    lam, cw = function
    for name in [a["Name"] for a in lam.list_aliases(FunctionName=d.function_name)["Aliases"]]:
        lam.delete_alias(FunctionName=d.function_name, Name=name)
    left = [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]]
    if left:
        cw.delete_alarms(AlarmNames=left)
    history = releases.History([1], [], canary=2)
    lam.create_alias(FunctionName=d.function_name, Name="live", FunctionVersion="1", Description=history.text(),
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})  # fmt: skip
    return lam, cw


def live(lam, d) -> tuple[str, dict, releases.History]:
    alias = releases.live_alias(lam, d)
    return alias["FunctionVersion"], canary.weights(alias), releases.read(alias)


def test_what_a_trip_means_and_a_canary_ends_only_its_own_routing(d, lam_cw):
    lam, cw = lam_cw
    # Another deploy's canary (version 2) is not this one's (version 3) to end.
    said = canary.roll_back(lam, cw, d, canary.Tripped("p90", "p90-latency"), "3", "1", [])
    assert "was ended elsewhere" in str(said) and live(lam, d) == ("1", {"2": 0.1}, releases.History([1], [], 2))
    # A latency (or confidence) trip rolls back without rejecting.
    said = canary.roll_back(lam, cw, d, canary.Tripped("slow", "p90-latency"), "2", "1", [])
    assert "rolled back, all traffic on version 1; version 2 is not rejected" in str(said)
    assert live(lam, d) == ("1", {}, releases.History([1], []))


@pytest.mark.parametrize(
    ("stop", "rejected"),
    [
        (canary.Tripped("5xx", "server-errors"), [2]),
        (canary.Tripped("failed", "function-errors"), [2]),
        (KeyboardInterrupt(), [2]),
        (canary.Unwatched("deleted"), []),
        (canary.Unjudged("too few"), []),
    ],
)
def test_an_error_rate_trip_or_a_person_rejects_too_little_evidence_does_not(d, lam_cw, stop, rejected):
    lam, cw = lam_cw
    canary.roll_back(lam, cw, d, stop, "2", "1", [])
    assert live(lam, d) == ("1", {}, releases.History([1], rejected))


def test_an_alarm_deleted_mid_canary_stops_it_unrejected(d, lam_cw):
    lam, cw = lam_cw
    names = []
    for alarm in alarms.definitions(d, ("2", VARIANT), ("1", VARIANT)):
        cw.put_metric_alarm(**alarm)
        names.append(alarm["AlarmName"])
    cw.delete_alarms(AlarmNames=[names[1]])  # another process's clean-up
    with pytest.raises(canary.Unwatched) as stopped:
        canary.watch(lam, cw, d, names, "2", 10, 60, "")
    said = canary.roll_back(lam, cw, d, stopped.value, "2", "1", names)
    assert f"alarm {names[1]} was deleted: the canary can no longer be watched" in str(said)
    assert live(lam, d) == ("1", {}, releases.History([1], [])) and alarms.states(cw, names) == {}


def test_a_roll_back_that_fails_says_so_and_how_to_end_it(d, lam_cw, monkeypatch):
    lam, cw = lam_cw

    def refused(**kwargs):
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ExpiredTokenException", "Message": EXPIRED}}, "UpdateAlias"
        )

    monkeypatch.setattr(lam, "update_alias", refused)
    said = canary.roll_back(lam, cw, d, canary.Tripped("5xx", "server-errors"), "2", "1", [])
    assert "5xx; rolling back failed too (AWS refused UpdateAlias: ExpiredTokenException: The security token" in str(
        said
    )
    assert "version 2 may still take a share of 'live': `make rollback` ends it" in str(said)
    assert live(lam, d) == ("1", {"2": 0.1}, releases.History([1], [], 2))  # nothing changed


def test_one_deploy_at_a_time(d, lam_cw):
    lam, _ = lam_cw
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    first = lock.take(lam, d, now, "alice@ci pid 1")
    with pytest.raises(DeployLocked) as refused:
        lock.take(lam, d, now + timedelta(minutes=3), "bob@laptop pid 2")
    assert "alice@ci pid 1 holds its lock since 2026-12-07 12:00:00 UTC (3 min ago)" in str(refused.value)
    assert "deploy.lock_stale_minutes 120" in str(refused.value)
    # Older than lock_stale_minutes: its deploy was killed outright; the next one takes it over, and the
    # killed one's release (had it lived on) no longer deletes it.
    second = lock.take(lam, d, now + timedelta(minutes=121), "bob@laptop pid 2")
    lock.release(lam, d, first)
    with pytest.raises(DeployLocked, match="bob@laptop pid 2 holds"):
        lock.take(lam, d, now + timedelta(minutes=122), "carol pid 3")
    lock.release(lam, d, second)
    third = lock.take(lam, d, now + timedelta(minutes=123), "carol pid 3")
    assert len({first, second, third}) == 3
    assert [a["Name"] for a in lam.list_aliases(FunctionName=d.function_name)["Aliases"]] == ["deploy-lock", "live"]
    lock.release(lam, d, third)
    assert [a["Name"] for a in lam.list_aliases(FunctionName=d.function_name)["Aliases"]] == ["live"]
