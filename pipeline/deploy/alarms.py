"""The CloudWatch alarms that watch a new version while it takes part of the traffic (deploy.strategy
canary or linear): on the metrics the function writes itself (serving/metrics.py, embedded in its
log lines) its 5xx rate, its p90 latency, and its mean top-class probability against the live
version's over the same minutes; on Lambda's own metrics its share of failed invocations (timeouts,
out-of-memory kills, crashes: requests that never write a line). They exist for the canary only:
deploy deletes them when the canary ends, and any a killed deploy left when the next canary starts;
destroy deletes them too (they carry deploy's tag)."""

from datetime import datetime, timedelta

from pipeline import params
from pipeline.deploy import limits, releases
from pipeline.deploy.aws import pages, tag_list, tagged
from serving import metric_names as metrics

# What each alarm watches, by the suffix of its name.
KINDS = ("server-errors", "p90-latency", "confidence", "function-errors")
LAMBDA_NAMESPACE = "AWS/Lambda"


def prefix(d: params.Deploy) -> str:
    return f"{d.function_name}-v"


def name(d: params.Deploy, version: str, kind: str) -> str:
    return f"{prefix(d)}{version}-{kind}"


def dimensions(d: params.Deploy, version: str, variant: str) -> list[dict]:
    """The function's own dimensions for one version (serving/metrics.py writes them)."""
    values = {"function": d.function_name, "version": version, "variant": variant}
    return [{"Name": n, "Value": values[n]} for n in metrics.DIMENSIONS]


def metric_stat(namespace: str, metric: str, dims: list[dict], statistic: str) -> dict:
    """A MetricStat over one alarm period (PutMetricAlarm's and GetMetricData's queries)."""
    return {
        "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
        "Period": limits.ALARM_PERIOD_S,
        "Stat": statistic,
    }


def stat(d: params.Deploy, version: str, variant: str, metric: str, statistic: str) -> dict:
    return metric_stat(metrics.NAMESPACE, metric, dimensions(d, version, variant), statistic)


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


def definitions(d: params.Deploy, new: tuple[str, str], live: "tuple[str, str] | None") -> list[dict]:
    """PutMetricAlarm's arguments for each alarm on the new version (version, variant). Each is
    judged on one period of the function's metrics; no data (no request reached the new version
    yet) is not breaching. The confidence alarm needs the live version's metrics: not made when
    the live version is not this deployer's (it writes none). The function-errors alarm is a rate
    (Errors / Invocations, errors filled with 0 where Lambda sent none) over the same threshold as
    the 5xx one, not "any error": one cold request cut off by the timeout among hundreds is not a
    broken version, and a version that cannot start fails every request (rate 1)."""
    version, variant = new
    common = {
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Tags": tag_list(d),
    }
    found = [
        {
            "AlarmName": name(d, version, "server-errors"),
            "AlarmDescription": f"version {version}: more than {d.alarm_error_rate:.1%} of its requests answered 5xx",
            **common,
            "Namespace": metrics.NAMESPACE,
            "MetricName": metrics.SERVER_ERROR,
            "Dimensions": dimensions(d, version, variant),
            "Period": limits.ALARM_PERIOD_S,
            "Statistic": "Average",  # ServerError is 1 or 0: its average is the 5xx rate
            "Threshold": d.alarm_error_rate,
        },
        {
            "AlarmName": name(d, version, "p90-latency"),
            "AlarmDescription": f"version {version}: p90 of the whole request over {d.alarm_p90_ms:g} ms",
            **common,
            "Namespace": metrics.NAMESPACE,
            "MetricName": metrics.LATENCY,
            "Dimensions": dimensions(d, version, variant),
            "Period": limits.ALARM_PERIOD_S,
            "ExtendedStatistic": "p90",
            "Threshold": d.alarm_p90_ms,
        },
    ]
    if live is not None:
        found.append(
            {
                "AlarmName": name(d, version, "confidence"),
                "AlarmDescription": (
                    f"version {version}: mean top-class probability more than {d.alarm_probability_drop:g} "
                    f"below live version {live[0]}'s over the same minute"
                ),
                **common,
                "Metrics": [
                    {"Id": "new", "MetricStat": stat(d, *new, metrics.TOP_PROBABILITY, "Average"), "ReturnData": False},
                    {
                        "Id": "live",
                        "MetricStat": stat(d, *live, metrics.TOP_PROBABILITY, "Average"),
                        "ReturnData": False,
                    },
                    {"Id": "drop", "Expression": "live - new", "Label": "probability drop", "ReturnData": True},
                ],
                "Threshold": d.alarm_probability_drop,
            }
        )
    found.append(
        {
            "AlarmName": name(d, version, "function-errors"),
            "AlarmDescription": (
                f"version {version}: more than {d.alarm_error_rate:.1%} of its invocations through "
                f"'{releases.ALIAS}' failed in Lambda (timeouts, out of memory, crashes: AWS/Lambda Errors)"
            ),
            **common,
            "Metrics": [
                {"Id": "errors", "MetricStat": lambda_sum(d, version, "Errors"), "ReturnData": False},
                {"Id": "invocations", "MetricStat": lambda_sum(d, version, "Invocations"), "ReturnData": False},
                {"Id": "rate", "Expression": "FILL(errors, 0) / invocations", "Label": "failed", "ReturnData": True},
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
    query = {"Id": "answered", "MetricStat": stat(d, *new, metrics.LATENCY, "SampleCount"), "ReturnData": True}
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


def left(cw, d: params.Deploy) -> list[str]:
    """Deploy's alarms on any version of the function (carrying its tag), e.g. left by a killed deploy."""
    found = pages(cw.describe_alarms, "MetricAlarms", AlarmNamePrefix=prefix(d))
    return [a["AlarmName"] for a in found if tagged(cw.list_tags_for_resource(ResourceARN=a["AlarmArn"])["Tags"], d)]
