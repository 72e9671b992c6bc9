"""The function's metrics: each request's structured log line is also a CloudWatch embedded metric
format (EMF) document, so CloudWatch makes metrics from the logs Lambda ships anyway - no API call
on the request's path, and still one JSON object per request.

Powertools' EMF provider builds and checks the document (units, names, the 30-dimension limit);
the log's fields go in as EMF properties (top-level keys that are not metrics), searchable in Logs
Insights. Dimensions: function, version (what the canary's alarms tell apart) and variant, and no
other: Powertools' environment (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE) changes nothing.
"""

import os

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from serving.metric_names import (
    CLIENT_ERROR,
    COLD_START,
    LATENCY,
    MODEL_LATENCY,
    NAMESPACE,
    SERVER_ERROR,
    TOP_PROBABILITY,
)

UNITS = {
    LATENCY: MetricUnit.Milliseconds,
    MODEL_LATENCY: MetricUnit.Milliseconds,
    SERVER_ERROR: MetricUnit.Count,
    CLIENT_ERROR: MetricUnit.Count,
    TOP_PROBABILITY: MetricUnit.NoUnit,
    COLD_START: MetricUnit.Count,
}

_cold = True  # module state: one execution environment imports this once


def where(context) -> dict:
    """The function and version that ran (Lambda's context; its environment under an emulator)."""
    return {
        "function": getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"),
        "version": getattr(context, "function_version", None)
        or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    }


def document(log: dict, context, variant: str) -> dict:
    """The request's log fields (status, total_ms, inference_ms, probability, top, ...) as one EMF document."""
    global _cold
    # service="": Powertools otherwise takes POWERTOOLS_SERVICE_NAME from the environment and adds a
    # "service" dimension, and the alarms' dimension set (function, version, variant) would get no
    # data. An explicit choice wins over the environment; an empty one adds none.
    emf = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service="")
    for name, value in {**where(context), "variant": variant}.items():
        emf.add_dimension(name, str(value))
    status = log["status"]
    values = {
        LATENCY: log["total_ms"],
        SERVER_ERROR: int(status >= 500),
        CLIENT_ERROR: int(400 <= status < 500),
        COLD_START: int(_cold),
    }
    if status == 200:
        values.update({MODEL_LATENCY: log["inference_ms"], TOP_PROBABILITY: log["probability"]})
    for name, value in values.items():
        emf.add_metric(name, UNITS[name], value)
    for key, value in log.items():
        emf.add_metadata(key, value)
    _cold = False
    return emf.serialize_metric_set()
