"""The canary's alarms (pipeline/deploy/alarms.py) on Lambda's own metrics, by the names AWS documents
for them, and the CloudWatch calls around the alarms (their states, deleting them, the requests a
version answered, those a killed deploy left) with a hand-made client of a few methods: fast tests,
no AWS stand-in. What the alarms on the function's own metrics decide: test_canary_judgement.py."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from lambda_proxy import Point, evaluate_alarm

from pipeline import params
from pipeline.deploy import alarms
from support import ROOT

FUNCTION, T0 = "clothes-classifier", 1_800_000_000  # T0: a minute's start


@pytest.fixture
def d() -> params.Deploy:
    """The checked-in deploy params: alarm_error_rate 0.01, alarm_min_samples 5, 3 of 5 minutes."""
    return params.load(ROOT / "params.yaml").deploy


def lambda_points(version: str, minutes: int, per_minute: int, failing: int) -> list[Point]:
    """What Lambda records for invocations through the 'live' alias that ran `version`, in AWS/Lambda under
    the dimensions AWS documents for an alias's executed version: Invocations 1 each, Errors 1 for the
    first `failing` of each minute (timeouts, crashes: no log line of the function's own), 0 for the rest."""
    dims = frozenset({("FunctionName", FUNCTION), ("Resource", f"{FUNCTION}:live"), ("ExecutedVersion", version)})
    found = []
    for m in range(minutes):
        for i in range(per_minute):
            at = T0 + m * 60 + i
            found += [Point(at, "AWS/Lambda", "Invocations", dims, 1.0),
                      Point(at, "AWS/Lambda", "Errors", dims, float(i < failing))]  # fmt: skip
    return found


def function_errors(d, points, minutes: int) -> list[str]:
    [alarm] = [
        a for a in alarms.definitions(d, ("2", "full_int8"), None) if a["AlarmName"].endswith("-function-errors")
    ]
    return [evaluate_alarm(alarm, points, T0 + m * 60 + 59)[0] for m in range(minutes)]


def test_the_function_errors_alarm_fires_on_lambda_s_own_errors_of_the_new_version(d):
    """6 invocations a minute of version 2, one of them failing in Lambda (1/6 > 1%): the third breaching
    minute fires. Version 1's 54 a minute, all fine, do not dilute it. Kills definitions 300-302, 315-317
    (Lambda's metric names), 326-328 (the judged expression's parts), lambda_dimensions 4-6, 22-24."""
    bad = lambda_points("2", 4, 6, failing=1) + lambda_points("1", 4, 54, failing=0)
    assert function_errors(d, bad, 4) == ["OK", "OK", "ALARM", "ALARM"]
    assert function_errors(d, lambda_points("2", 4, 6, failing=0), 4) == ["OK"] * 4
    # 4 invocations a minute, all failing: fewer than alarm_min_samples, no minute judged.
    assert function_errors(d, lambda_points("2", 4, 4, failing=4), 4) == ["OK"] * 4


def test_the_alarms_queries_and_descriptions_literally(d):
    """CloudWatch's metric math names its functions in capitals (IF, FILL), as written here; the ids and
    labels are what the console's graph of each alarm shows. Kills definitions 26 (the description's
    'in 3 of 5 minutes'), 83, 84, 95, 96, 154, 155, 166-168, 324, 325, 335, 337, 338."""
    found = {a["AlarmName"].rsplit("-v2-", 1)[1]: a for a in alarms.definitions(d, ("2", "full_int8"), None)}
    dims = [{"Name": "function", "Value": FUNCTION}, {"Name": "version", "Value": "2"},
            {"Name": "variant", "Value": "full_int8"}]  # fmt: skip
    lam = [{"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Resource", "Value": f"{FUNCTION}:live"},
           {"Name": "ExecutedVersion", "Value": "2"}]  # fmt: skip

    def query(query_id, namespace, metric, dimensions, statistic):
        metric_stat = {"Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                       "Period": 60, "Stat": statistic}  # fmt: skip
        return {"Id": query_id, "MetricStat": metric_stat, "ReturnData": False}

    def expression(query_id, text, label):
        return {"Id": query_id, "Expression": text, "Label": label, "ReturnData": True}

    ours = "clothes-serverless"
    assert found["server-errors"]["Metrics"] == [
        query("rate", ours, "ServerError", dims, "Average"),
        query("requests", ours, "ServerError", dims, "SampleCount"),
        expression("judged", "IF(requests >= 5, rate, 0)", "5xx rate"),
    ]
    assert found["p90-latency"]["Metrics"] == [
        query("p90", ours, "ModelLatency", dims, "p90"),
        query("answers", ours, "ModelLatency", dims, "SampleCount"),
        expression("judged", "IF(answers >= 5, p90, 0)", "p90 ModelLatency"),
    ]
    assert found["function-errors"]["Metrics"] == [
        query("errors", "AWS/Lambda", "Errors", lam, "Sum"),
        query("invocations", "AWS/Lambda", "Invocations", lam, "Sum"),
        expression("rate", "IF(invocations >= 5, FILL(errors, 0) / invocations, 0)", "failed"),
    ]
    assert found["server-errors"]["AlarmDescription"] == (
        "version 2: more than 1.0% of its requests answered 5xx in 3 of 5 minutes with 5+ requests"
    )
    assert found["function-errors"]["Tags"] == [{"Key": "clothes-serverless", "Value": FUNCTION}]
    # With a live version of this deployer's: the confidence alarm names it (definitions 189: its variant).
    [confidence] = [
        a for a in alarms.definitions(d, ("2", "full_int8"), ("1", "float32")) if "confidence" in a["AlarmName"]
    ]
    assert confidence["AlarmDescription"] == (
        "version 2: mean top-class probability more than 0.1 below live version 1's over the same minute, "
        "in 3 of 5 minutes with 5+ requests (each version)"
    )


class Cw:
    """The CloudWatch client's methods alarms.py calls, over a list of alarms; every call recorded."""

    def __init__(self, found: list, tags: "dict | None" = None, page: int = 2, data: "list | None" = None):
        self.found, self.tags, self.page, self.data, self.calls = found, tags or {}, page, data or [], []

    def describe_alarms(self, **kwargs):  # only through its paginator
        raise AssertionError("a listing of alarms must be paginated")

    def get_metric_data(self, **kwargs):
        raise AssertionError("metric data must be paginated")

    def get_paginator(self, name):
        return SimpleNamespace(paginate=lambda **kwargs: self.paginate(name, **kwargs))

    def paginate(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if name == "get_metric_data":
            yield from ({"MetricDataResults": [{"Values": values}]} for values in self.data)
            return
        wanted = [a for a in self.found if a["AlarmName"] in kwargs.get("AlarmNames", [a["AlarmName"]])
                  and a["AlarmName"].startswith(kwargs.get("AlarmNamePrefix", ""))]  # fmt: skip
        for start in range(0, len(wanted), self.page):
            yield {"MetricAlarms": wanted[start : start + self.page]}

    def delete_alarms(self, **kwargs):
        self.calls.append(("delete_alarms", kwargs))

    def list_tags_for_resource(self, **kwargs):
        return {"Tags": self.tags.get(kwargs["ResourceARN"], [])}


def alarm(name, state="OK", **more) -> dict:
    return {"AlarmName": name, "AlarmArn": f"arn:{name}", "StateValue": state, **more}


def test_states_of_the_named_alarms_only_with_their_reasons():
    cw = Cw([alarm("a", "ALARM", StateReason="3 of 5"), alarm("b"), alarm("other", "ALARM", StateReason="x")])
    # Kills states 8 (no AlarmNames: the account's every alarm), 18-25 (the reason's key and its default).
    assert alarms.states(cw, ["a", "b", "gone"]) == {"a": ("ALARM", "3 of 5"), "b": ("OK", "")}
    assert cw.calls == [("describe_alarms", {"AlarmNames": ["a", "b", "gone"]})]
    assert alarms.states(cw, []) == {} and len(cw.calls) == 1  # no names: no call (it would list them all)


def test_delete_sends_the_existing_alarms_100_a_call():
    names = [f"fn-v{i}-server-errors" for i in range(250)]
    cw = Cw([alarm(n) for n in names], page=100)
    alarms.delete(cw, [*names, "fn-v999-gone"])
    # Kills delete 11 (range(0, 100): a call from each of the first 100 names) and 12 (a call from each name).
    deleted = [c[1]["AlarmNames"] for c in cw.calls if c[0] == "delete_alarms"]
    assert deleted == [names[:100], names[100:200], names[200:]]


def test_answered_counts_the_latency_samples_of_whole_minutes(d):
    cw = Cw([], data=[[3.0, 2.0], [1.0], []])
    since = datetime(2026, 12, 7, 12, 3, 45, 500_000, tzinfo=UTC)
    until = datetime(2026, 12, 7, 12, 7, 10, 250_000, tzinfo=UTC)  # answered 13: the microseconds dropped too
    assert alarms.answered(cw, d, ("2", "full_int8"), since, until) == 6
    dims = [{"Name": "function", "Value": FUNCTION}, {"Name": "version", "Value": "2"},
            {"Name": "variant", "Value": "full_int8"}]  # fmt: skip
    query = {"Id": "answered", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "clothes-serverless", "MetricName": "Latency", "Dimensions": dims},
        "Period": 60, "Stat": "SampleCount"}}  # fmt: skip
    # From the minute `since` falls in to the end of the minute `until` falls in: 12:03 to 12:08.
    assert cw.calls == [("get_metric_data", {"MetricDataQueries": [query],
                                             "StartTime": datetime(2026, 12, 7, 12, 3, tzinfo=UTC),
                                             "EndTime": datetime(2026, 12, 7, 12, 8, tzinfo=UTC)})]  # fmt: skip


def test_find_left_names_the_alarms_deploy_tagged_on_any_version(d):
    mine = [{"Key": "clothes-serverless", "Value": FUNCTION}]
    found = [alarm(f"{FUNCTION}-v3-p90-latency"), alarm(f"{FUNCTION}-v4-confidence"), alarm(f"{FUNCTION}-v5-x"),
             alarm(f"{FUNCTION}-other"), alarm(f"other-{FUNCTION}-v3-p90-latency")]  # fmt: skip
    tags = {f"arn:{FUNCTION}-v3-p90-latency": mine, f"arn:{FUNCTION}-v4-confidence": mine,
            f"arn:{FUNCTION}-v5-x": [{"Key": "clothes-serverless", "Value": "another-function"}],
            f"arn:{FUNCTION}-other": mine, f"arn:other-{FUNCTION}-v3-p90-latency": mine}  # fmt: skip
    cw = Cw(found, tags)
    assert alarms.find_left(cw, d) == [f"{FUNCTION}-v3-p90-latency", f"{FUNCTION}-v4-confidence"]
    assert cw.calls == [("describe_alarms", {"AlarmNamePrefix": f"{FUNCTION}-v"})]
