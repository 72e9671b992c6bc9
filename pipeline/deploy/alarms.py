"""The CloudWatch alarms that watch a new version while it takes part of the traffic (deploy.strategy
canary or linear), on the metrics the function writes itself (serving/metrics.py, embedded in its
log lines): its 5xx rate, its p90 latency, and its mean top-class probability against the live
version's over the same minutes. They exist for the canary only: deploy deletes them when the
canary ends, destroy deletes any a killed deploy left (they carry deploy's tag)."""

from pipeline import params
from pipeline.deploy import limits
from pipeline.deploy.aws import pages, tag_list, tagged
from serving import metric_names as metrics

# What each alarm watches, by the suffix of its name.
KINDS = ("server-errors", "p90-latency", "confidence")


def prefix(d: params.Deploy) -> str:
    return f"{d.function_name}-v"


def name(d: params.Deploy, version: str, kind: str) -> str:
    return f"{prefix(d)}{version}-{kind}"


def dimensions(d: params.Deploy, version: str, variant: str) -> list[dict]:
    """The function's own dimensions for one version (serving/metrics.py writes them)."""
    values = {"function": d.function_name, "version": version, "variant": variant}
    return [{"Name": n, "Value": values[n]} for n in metrics.DIMENSIONS]


def stat(d: params.Deploy, version: str, variant: str, metric: str, statistic: str) -> dict:
    return {
        "Metric": {"Namespace": metrics.NAMESPACE, "MetricName": metric, "Dimensions": dimensions(d, version, variant)},
        "Period": limits.ALARM_PERIOD_S,
        "Stat": statistic,
    }


def definitions(d: params.Deploy, new: tuple[str, str], live: "tuple[str, str] | None") -> list[dict]:
    """PutMetricAlarm's arguments for each alarm on the new version (version, variant). Each is
    judged on one period of the function's metrics; no data (no request reached the new version
    yet) is not breaching. The confidence alarm needs the live version's metrics: not made when
    the live version is not this deployer's (it writes none)."""
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
    return found


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
