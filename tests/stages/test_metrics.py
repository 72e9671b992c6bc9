"""The function's metrics: the real handler, in-process on the small run's full int8 model, writes one
JSON line per request, and that line is a valid CloudWatch embedded metric format (EMF) document
(checked against the EMF specification's schema) with the documented dimensions and metrics."""

import base64
import importlib
import json
import time

import jsonschema
import pytest

UNITS = [
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"),
    *("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second"),
    *("Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second"),
    *("Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"),
]
# The EMF specification's structure (CloudWatch_Embedded_Metric_Format_Specification): the _aws
# metadata with a millisecond Timestamp and the metric directives; members' limits as the spec gives them.
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
NUMBER = {"type": "number"}
VALUE = {"anyOf": [NUMBER, {"type": "array", "items": NUMBER, "minItems": 1, "maxItems": 100}]}


class Context:
    """What Lambda passes: the function and the version that ran."""

    aws_request_id = "req-emf"
    function_name = "clothes-classifier"
    function_version = "7"


def emf_lines(capsys) -> list[dict]:
    lines = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in lines]


def check_emf(document: dict) -> dict:
    """Valid EMF: the schema, and each metric and dimension a directive names is a top-level key
    (a number or up to 100 of them; a string). Its metrics, name -> (unit, value)."""
    jsonschema.validate(document, EMF_SCHEMA)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    for name in (n for dimension_set in directive["Dimensions"] for n in dimension_set):
        assert isinstance(document[name], str) and document[name], name
    found = {}
    for metric in directive["Metrics"]:
        jsonschema.validate(document[metric["Name"]], VALUE)
        value = document[metric["Name"]]
        found[metric["Name"]] = (metric["Unit"], value[0] if isinstance(value, list) else value)
    return found


def test_each_request_writes_one_emf_line_with_the_documented_metrics(handler, photo, capsys):
    metrics = importlib.reload(handler.metrics)  # as a fresh execution environment imports it: cold
    capsys.readouterr()
    started = time.perf_counter()
    answer = handler.lambda_handler({"image": base64.b64encode(photo).decode()}, Context())
    wall_ms = (time.perf_counter() - started) * 1000  # the first request as the test saw it, from outside
    warm = handler.lambda_handler({"image": base64.b64encode(photo).decode()}, Context())
    refused = handler.lambda_handler({"image": "not base64!"}, Context())
    documents = emf_lines(capsys)
    assert len(documents) == 3  # one line per request, the log and the metrics in one object
    assert refused["statusCode"] == 400 and warm["top"] == answer["top"]

    first, second, third = (check_emf(d) for d in documents)
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "clothes-serverless" == metrics.NAMESPACE
        assert directive["Dimensions"] == [["function", "version", "variant"]]
        assert (document["function"], document["version"], document["variant"]) == (
            "clothes-classifier",
            "7",
            "full_int8",
        )
        assert document["request_id"] == "req-emf"  # the log's fields are EMF properties of the same line
    # Latency is the whole request, measured inside it: more than the model's part, less than the call as the
    # test timed it from outside (bounds, not a speed: a Latency of the model alone or in seconds fails them).
    unit, latency = first["Latency"]
    assert unit == "Milliseconds" and answer["inference_ms"] < latency <= wall_ms + 0.01
    assert first == {
        "Latency": ("Milliseconds", latency),
        "ModelLatency": ("Milliseconds", answer["inference_ms"]),
        "ServerError": ("Count", 0),
        "ClientError": ("Count", 0),
        "TopProbability": ("None", answer["probability"]),
        "ColdStart": ("Count", 1),
    }
    assert documents[0]["top"] == answer["top"] and documents[0]["status"] == 200  # the predicted class: a property
    assert second["ColdStart"] == ("Count", 0) and second["TopProbability"] == ("None", warm["probability"])
    # A refused request has no model latency nor probability (they would pull the averages down).
    assert third == {"Latency": ("Milliseconds", documents[2]["total_ms"]), "ServerError": ("Count", 0),
                     "ClientError": ("Count", 1), "ColdStart": ("Count", 0)}  # fmt: skip
    assert documents[2]["status"] == 400 and "base64" in documents[2]["error"]


def test_a_server_error_is_counted_under_the_variant_beside_the_model(handler, photo, tmp_path, monkeypatch, capsys):
    """A model that cannot load: a 500, counted as a ServerError of the variant its model.json names."""
    corrupt = tmp_path / "model.tflite"
    corrupt.write_bytes(b"TFL3" + b"\0" * 1000)
    (tmp_path / "model.json").write_text(json.dumps({"variant": "float16", "sha256": "0" * 64}))
    monkeypatch.setattr(handler, "MODEL_PATH", corrupt)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    handler.model.cache_clear()
    capsys.readouterr()
    try:
        answer = handler.lambda_handler({"image": base64.b64encode(photo).decode()})
    finally:
        handler.model.cache_clear()
    [document] = emf_lines(capsys)
    found = check_emf(document)
    assert answer["statusCode"] == 500 and found["ServerError"] == ("Count", 1) and found["ClientError"] == ("Count", 0)
    assert "TopProbability" not in found and document["traceback"]
    assert (document["function"], document["version"], document["variant"]) == ("local", "$LATEST", "float16")


def test_powertools_settings_on_the_function_add_no_dimension(handler, photo, monkeypatch, capsys):
    """POWERTOOLS_SERVICE_NAME (a usual Powertools setting, set on the function by hand) makes
    Powertools add a "service" dimension of its own: the alarms read exactly function, version and
    variant, and a set with one more dimension is another metric, which they would never see."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "clothes")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "elsewhere")
    capsys.readouterr()
    answer = handler.lambda_handler({"image": base64.b64encode(photo).decode()}, Context())
    [document] = emf_lines(capsys)
    assert answer["top"] and check_emf(document)["ServerError"] == ("Count", 0)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["function", "version", "variant"]] and "service" not in document
    assert directive["Namespace"] == "clothes-serverless"


def test_the_check_refuses_what_is_not_emf():
    """The check can fail: no timestamp, a unit EMF does not know, a dimension named but not given."""
    directive = {"Namespace": "n", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "Count"}]}
    good = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [directive]}, "d": "x", "m": 1}
    assert check_emf(good) == {"m": ("Count", 1)}
    no_time = {**good, "_aws": {"CloudWatchMetrics": [directive]}}
    bad_unit = {
        **good,
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{**directive, "Metrics": [{"Name": "m", "Unit": "ms"}]}]},
    }
    for broken in (no_time, bad_unit):
        with pytest.raises(jsonschema.ValidationError):
            check_emf(broken)
    with pytest.raises(KeyError):
        check_emf({"_aws": good["_aws"], "m": 1})
