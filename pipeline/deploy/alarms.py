"""The CloudWatch alarms that watch a new version while it takes part of the traffic (deploy.strategy
canary or linear): on the metrics the function writes itself (serving/metrics.py, embedded in its
log lines) its 5xx rate, its p90 model-and-decode latency, and its mean top-class probability against
the live version's over the same minutes; on Lambda's own metrics its share of failed invocations
(timeouts, out-of-memory kills, crashes: requests that never write a line). They exist for the canary
only: deploy deletes them when the canary ends, and any a killed deploy left when the next canary
starts; destroy deletes them too (they carry deploy's tag).

The judgement (docs/canary.md): each alarm is metric math over one-minute periods that gives a minute
with fewer than alarm_min_samples requests (of either version it compares) the value 0, so too little
evidence is a quiet minute, never a breach; it fires when alarm_datapoints of the last alarm_periods
minutes breach. Latency is ModelLatency (decoding the photo and the model, measured after the model is
loaded): neither the client's URL fetch nor a new execution environment's model load counts. An
error-rate alarm's trip rejects the version; a latency or confidence trip rolls it back unrejected.
"""

from datetime import datetime, timedelta

from pipeline import params
from pipeline.deploy import limits, releases
from pipeline.deploy.aws import pages, tag_list, tagged
from serving import metric_names

# What each alarm watches, by the suffix of its name.
KINDS = ("server-errors", "p90-latency", "confidence", "function-errors")
# An error-rate trip rejects the version (it answered wrongly); a latency or confidence trip rolls it back
# unrejected: a statistic over a few requests a minute, which a deploy of the same version may pass.
REJECTING = ("server-errors", "function-errors")
LAMBDA_NAMESPACE = "AWS/Lambda"


def prefix(d: params.Deploy) -> str:
    return f"{d.function_name}-v"


def name(d: params.Deploy, version: str, kind: str) -> str:
    return f"{prefix(d)}{version}-{kind}"


def dimensions(d: params.Deploy, version: str, variant: str) -> list[dict]:
    """The function's own dimensions for one version (serving/metrics.py writes them)."""
    values = {"function": d.function_name, "version": version, "variant": variant}
    return [{"Name": n, "Value": values[n]} for n in metric_names.DIMENSIONS]


def metric_stat(namespace: str, metric: str, dims: list[dict], statistic: str) -> dict:
    """A MetricStat over one alarm period (PutMetricAlarm's and GetMetricData's queries)."""
    return {
        "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
        "Period": limits.ALARM_PERIOD_S,
        "Stat": statistic,
    }


def stat(d: params.Deploy, version: str, variant: str, metric: str, statistic: str) -> dict:
    return metric_stat(metric_names.NAMESPACE, metric, dimensions(d, version, variant), statistic)


def lambda_dimensions(d: params.Deploy, version: str) -> list[dict]:
    """Lambda's own metrics for one version behind the alias: invocations through 'live' that ran
    that version (Lambda publishes this set for a weighted alias; SAM's canary alarms use it)."""
    return [
        {"Name": "FunctionName", "Value": d.function_name},
        {"Name": "Resource", "Value": f"{d.function_name}:{releases.ALIAS}"},
        {"Name": "ExecutedVersion", "Value": version},
    ]


def lambda_sum(d: params.Deploy, version: str, metric: str) -> dict:
    return metric_stat(LAMBDA_NAMESPACE, metric, lambda_dimensions(d, version), "Sum")


def judged_above(samples: str, value: str, n: int) -> str:
    """Metric math: the value in minutes with at least n samples, else 0 (a quiet minute, not a breach)."""
    return f"IF({samples} >= {n}, {value}, 0)"


def query(query_id: str, metric_stat: dict) -> dict:
    return {"Id": query_id, "MetricStat": metric_stat, "ReturnData": False}


def expression(query_id: str, expression: str, label: str) -> dict:
    return {"Id": query_id, "Expression": expression, "Label": label, "ReturnData": True}


def definitions(d: params.Deploy, new: tuple[str, str], live: "tuple[str, str] | None") -> list[dict]:
    """PutMetricAlarm's arguments for each alarm on the new version (version, variant). Each is
    metric math that judges only minutes with alarm_min_samples requests (judged_above), and fires
    when alarm_datapoints of the last alarm_periods minutes breach; no data at all (no request reached
    the new version yet) is not breaching. The confidence alarm needs the live version's metrics: not
    made when the live version is not this deployer's (it writes none). The function-errors alarm is a
    rate (Errors / Invocations, errors filled with 0 where Lambda sent none) over the same threshold as
    the 5xx one, not "any error": one cold request cut off by the timeout among hundreds is not a
    broken version, and a version that cannot start fails every request (rate 1)."""
    version, variant = new
    n = d.alarm_min_samples
    common = {
        "EvaluationPeriods": d.alarm_periods,
        "DatapointsToAlarm": d.alarm_datapoints,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": tag_list(d),
    }
    judging = f"in {d.alarm_datapoints} of {d.alarm_periods} minutes with {n}+ requests"
    found = [
        {
            "AlarmName": name(d, version, "server-errors"),
            "AlarmDescription": (
                f"version {version}: more than {d.alarm_error_rate:.1%} of its requests answered 5xx {judging}"
            ),
            **common,
            "Metrics": [
                # ServerError is 1 or 0: its average is the 5xx rate, its sample count the requests
                query("rate", stat(d, *new, metric_names.SERVER_ERROR, "Average")),
                query("requests", stat(d, *new, metric_names.SERVER_ERROR, "SampleCount")),
                expression("judged", judged_above("requests", "rate", n), "5xx rate"),
            ],
            "Threshold": d.alarm_error_rate,
        },
        {
            "AlarmName": name(d, version, "p90-latency"),
            "AlarmDescription": (
                f"version {version}: p90 of decoding and the model (no fetch, no model load) over "
                f"{d.alarm_p90_ms:g} ms {judging}"
            ),
            **common,
            "Metrics": [
                query("p90", stat(d, *new, metric_names.MODEL_LATENCY, "p90")),
                query("answers", stat(d, *new, metric_names.MODEL_LATENCY, "SampleCount")),
                expression("judged", judged_above("answers", "p90", n), "p90 ModelLatency"),
            ],
            "Threshold": d.alarm_p90_ms,
        },
    ]
    if live is not None:
        both = f"IF(new_answers >= {n} AND live_answers >= {n}, live - new, 0)"
        found.append(
            {
                "AlarmName": name(d, version, "confidence"),
                "AlarmDescription": (
                    f"version {version}: mean top-class probability more than {d.alarm_probability_drop:g} "
                    f"below live version {live[0]}'s over the same minute, {judging} (each version)"
                ),
                **common,
                "Metrics": [
                    query("new", stat(d, *new, metric_names.TOP_PROBABILITY, "Average")),
                    query("new_answers", stat(d, *new, metric_names.TOP_PROBABILITY, "SampleCount")),
                    query("live", stat(d, *live, metric_names.TOP_PROBABILITY, "Average")),
                    query("live_answers", stat(d, *live, metric_names.TOP_PROBABILITY, "SampleCount")),
                    expression("drop", both, "probability drop"),
                ],
                "Threshold": d.alarm_probability_drop,
            }
        )
    found.append(
        {
            "AlarmName": name(d, version, "function-errors"),
            "AlarmDescription": (
                f"version {version}: more than {d.alarm_error_rate:.1%} of its invocations through "
                f"'{releases.ALIAS}' failed in Lambda (timeouts, out of memory, crashes: AWS/Lambda Errors) {judging}"
            ),
            **common,
            "Metrics": [
                query("errors", lambda_sum(d, version, "Errors")),
                query("invocations", lambda_sum(d, version, "Invocations")),
                expression("rate", judged_above("invocations", "FILL(errors, 0) / invocations", n), "failed"),
            ],
            "Threshold": d.alarm_error_rate,
        }
    )
    return found


def answered(cw, d: params.Deploy, new: tuple[str, str], since: datetime, until: datetime) -> int:
    """How many requests the new version (version, variant) answered between the two times: the
    samples of its Latency metric (every request writes one, whatever its status), whole minutes."""
    start = since.replace(second=0, microsecond=0)
    end = until.replace(second=0, microsecond=0) + timedelta(minutes=1)
    query = {"Id": "answered", "MetricStat": stat(d, *new, metric_names.LATENCY, "SampleCount"), "ReturnData": True}
    found = pages(cw.get_metric_data, "MetricDataResults", MetricDataQueries=[query], StartTime=start, EndTime=end)
    return round(sum(sum(result["Values"]) for result in found))


def states(cw, names: list[str]) -> dict[str, tuple[str, str]]:
    """Each alarm's state (OK, ALARM or INSUFFICIENT_DATA) and its reason; an alarm deleted meanwhile is absent."""
    if not names:  # DescribeAlarms without names lists every alarm of the account
        return {}
    found = pages(cw.describe_alarms, "MetricAlarms", AlarmNames=names)
    return {a["AlarmName"]: (a["StateValue"], a.get("StateReason", "")) for a in found}


def delete(cw, names: list[str]) -> None:
    """Those of the names that exist (another process may have deleted some: DeleteAlarms deletes
    none when one is not there)."""
    names = list(states(cw, names))
    for start in range(0, len(names), limits.ALARMS_PER_DELETE):
        cw.delete_alarms(AlarmNames=names[start : start + limits.ALARMS_PER_DELETE])


def find_left(cw, d: params.Deploy) -> list[str]:
    """Deploy's alarms on any version of the function (carrying its tag), e.g. left by a killed deploy."""
    found = pages(cw.describe_alarms, "MetricAlarms", AlarmNamePrefix=prefix(d))
    return [a["AlarmName"] for a in found if tagged(cw.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"], d)]
