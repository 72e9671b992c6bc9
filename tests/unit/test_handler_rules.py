"""The handler's size and base64 rules at their edges, without a model (issue 34: mutants that survived the
event tests). Each test names the change to handler.py it fails on."""

import base64
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from serving import handler
from support import BOUNDARY, http_api, multipart

LIMIT = 6 * 1024 * 1024  # Lambda's synchronous payload limit: 6,291,456 bytes, 8,388,608 characters in base64


@pytest.mark.parametrize(("raw", "encoded"), [(0, 0), (1, 4), (2, 4), (3, 4), (4, 8), (300_000, 400_000)])
def test_base64_length_is_four_characters_per_started_three_bytes(raw, encoded):
    # By hand from RFC 4648 (padding included). Fails on any change to (n + 2) // 3 * 4.
    assert handler._base64_length(raw) == encoded


def test_an_image_at_the_payload_limit_is_read_and_one_character_more_is_413():
    # 8,388,608 characters (the base64 of exactly 6 MiB) pass the size check; 8,388,612 do not. Fails if the limit
    # is computed otherwise, or the comparison becomes >= (the limit itself refused).
    over = "A" * (LIMIT // 3 * 4 + 4)  # 6 MiB is 2,097,152 groups of 3 bytes: 8,388,608 characters, + one group
    with pytest.raises(handler.PayloadTooLarge):
        handler.parse_event({"image": over})
    exact = "A" * ((LIMIT + 2) // 3 * 4)
    assert len(handler.parse_event({"image": exact}).image) == (LIMIT + 2) // 3 * 3


@pytest.mark.parametrize("text", ["aGF0!!!!", "aGF0\\n", "a GF0"])
def test_base64_with_characters_outside_its_alphabet_is_400(text):
    # b64decode without validate=True drops such characters and decodes the rest: fails if validation goes.
    with pytest.raises(handler.BadRequest, match="'image' is not valid base64") as error:
        handler.parse_event({"image": text})
    assert error.value.status == 400


# Issue 34's second pass on handler.py (mutation_2026-12-08.md): the refusals' guards and the words a client
# reads in each 4xx (the answer's "error"); each test names the mutants it kills.
BODY_LIMIT = (LIMIT + 2) // 3 * 4  # 8,388,608 characters of base64


def refused(event) -> str:
    """The message of the 400 (or 413) parse_event answers this event with."""
    with pytest.raises(handler.BadRequest) as error:
        handler.parse_event(event)
    return str(error.value)


def http(body, **fields) -> dict:
    """An HTTP API (payload 2.0) event with this body (text, as API Gateway passes one not base64-encoded)."""
    return {"version": "2.0", "body": body, **fields}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": 123}, "'url' must be a non-empty string"),  # _from_fields 20: `and` lets a number through
        ({"url": ""}, "'url' must be a non-empty string"),  # and an empty string; 23-25: the words
        ({"image": 123}, "'image' must be a non-empty base64 string"),  # 30; 33-35
        ({"image": ""}, "'image' must be a non-empty base64 string"),
        ({}, "give exactly one of 'url' (http(s) address) or 'image' (base64 string)"),  # 17
        (
            {"url": "https://example.com/a.jpg", "image": "aGF0"},
            "give exactly one of 'url' (http(s) address) or 'image' (base64 string)",
        ),  # fmt: skip
    ],
)
def test_a_direct_request_needs_exactly_one_non_empty_url_or_image(fields, message):
    assert refused(fields) == message


def test_a_json_body_that_is_not_an_object_is_400():
    """_from_fields 2-5 (the words)."""
    json_array = http("[1, 2]", headers={"content-type": "application/json"})
    assert refused(json_array) == "the request must be a JSON object with 'url' or 'image'"


def test_an_image_over_the_payload_limit_says_the_limit():
    """_from_fields 38 (the words of the 413)."""
    with pytest.raises(handler.PayloadTooLarge) as error:
        handler.parse_event({"image": "A" * (BODY_LIMIT + 4)})
    assert str(error.value) == "'image' is larger than Lambda's 6,291,456-byte payload limit"


def test_a_body_at_the_payload_limit_is_read_and_one_group_more_is_413():
    """parse_event 21 (`>=`: the limit itself refused), 23 (the words of the 413)."""
    exact = handler.parse_event(http("A" * BODY_LIMIT, isBase64Encoded=True))
    assert exact.image == b"\0" * (BODY_LIMIT // 4 * 3)  # "AAAA" is three zero bytes
    with pytest.raises(handler.PayloadTooLarge) as error:
        handler.parse_event(http("A" * (BODY_LIMIT + 4), isBase64Encoded=True))
    assert str(error.value) == "the body is larger than Lambda's 6,291,456-byte payload limit"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([1], "the event must be a JSON object"),  # parse_event 2-5
        (http(5), "the event's 'body' must be a string"),  # 18-20
        (http("aGF0!", isBase64Encoded=True), "'body' is not valid base64"),  # 28, 31, 32: which field
        (http("\ud800"), "the body is not valid UTF-8"),  # _utf8 1-4: a lone surrogate from a JSON \ud800
        (http(""), "empty body: send an image, or JSON with 'url' or 'image'"),  # 42, 43
        (http("x", headers=[1]), "the event's 'headers' must be an object"),  # 51-53
        (http("{nope", headers={"content-type": "application/json"}), "the body is not valid JSON"),  # 80
    ],
)
def test_each_malformed_event_is_400_with_what_is_wrong(event, message):
    assert refused(event) == message


def test_a_json_body_is_read_as_json_by_its_type_or_its_first_brace():
    """parse_event 68, 72, 73 (the content type's parameters and its name: a JSON body with a charset and a
    leading space would be taken for an image), 70, 74, 76 (`curl -d '{"url": ...}'` sends a form's content
    type: the body's first byte, "{", makes it JSON)."""
    url = {"url": "https://example.com/a.jpg"}
    typed = handler.parse_event(http(' {"url": "https://example.com/a.jpg"}',
                                     headers={"Content-Type": "Application/JSON; charset=utf-8"}))  # fmt: skip
    assert typed == handler.Request("http_api", **url)
    form = handler.parse_event(http(json.dumps(url), headers={"content-type": "application/x-www-form-urlencoded"}))
    assert form == handler.Request("http_api", **url)


def test_health_is_read_from_raw_path_first_then_the_context_s_path():
    """is_health 2 (a non-object event taken for health), 18-22 (rawPath first), 23-25 (the context's path)."""
    assert not handler.is_health([1]) and not handler.is_health("GET /health")
    get = {"method": "GET"}
    assert handler.is_health({"version": "2.0", "rawPath": "/health", "requestContext": {"http": get}})
    assert handler.is_health({"version": "2.0", "requestContext": {"http": {**get, "path": "/health"}}})
    both = {"version": "2.0", "rawPath": "/health", "requestContext": {"http": {**get, "path": "/default/health"}}}
    assert handler.is_health(both)


def test_the_form_hint_reads_a_multipart_start_in_the_first_kilobyte_only():
    """upload_hint 7 (`or`: a body starting "--", or naming form-data, is not a form by itself), 15 (the first
    1,024 bytes: a Content-Disposition ending at byte 1,025 is past them)."""
    octets = "application/octet-stream"
    part = b"Content-Disposition: form-data"  # 30 bytes
    for body in (b"--" + b"x" * 100, b"xx" + part):
        assert handler.upload_hint(handler.Request("http_api", image=body, content_type=octets)) is None
    within = handler.Request("http_api", image=b"--" + b"x" * 992 + part, content_type=octets)  # bytes 994-1023
    past = handler.Request("http_api", image=b"--" + b"x" * 993 + part, content_type=octets)  # bytes 995-1024
    assert handler.upload_hint(within).startswith("the body is a multipart form (curl -F): ")
    assert handler.upload_hint(past) is None


def test_a_snapstart_init_loads_the_model_and_an_on_demand_one_does_not(monkeypatch):
    """load_for_snapshot 1-5."""
    loads = []
    monkeypatch.setattr(handler, "model", lambda: loads.append(1))
    assert handler.load_for_snapshot(None) is False and handler.load_for_snapshot("on-demand") is False
    assert loads == []
    assert handler.load_for_snapshot("snap-start") is True and loads == [1]


# ------------------------------------------------------------------ the handler with a stand-in model
# lambda_handler, answer_health, predict, health, classes, respond and load_model_info without a real model
# (test_handler.py runs them with one): a stand-in runner whose logits are 0 and ln 3 for any photo, that is
# probabilities 1/4 and 3/4 (by hand), and the metadata the convert stage writes beside a model.
INFO = {"labels": ["hat", "shoes"], "input_size": 8, "variant": "full_int8", "sha256": "abc"}
CONTEXT = SimpleNamespace(aws_request_id="r-1", function_name="clothes", function_version="3")


class StandIn:
    input_size = 8

    def __init__(self, error: "Exception | None" = None):
        self.error, self.batches = error, []

    def logits(self, batch):
        self.batches.append((batch.shape, batch.dtype))
        if self.error:
            raise self.error
        return np.array([[0.0, math.log(3)]], dtype=np.float32)


def serve_with(monkeypatch, runner) -> None:
    monkeypatch.setattr(handler, "model", lambda: (runner, INFO))


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (10, 10), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def logged(capsys) -> dict:
    """The one JSON line the handler printed for the request."""
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


SHOES_FIRST = [{"label": "shoes", "probability": 0.75}, {"label": "hat", "probability": 0.25}]


def test_a_photo_is_answered_with_every_class_most_probable_first(monkeypatch, capsys):
    runner = StandIn()
    serve_with(monkeypatch, runner)
    body = handler.lambda_handler({"image": base64.b64encode(photo()).decode()}, CONTEXT)
    assert body == {
        "top": "shoes",
        "probability": 0.75,
        "predictions": SHOES_FIRST,
        "model": {"variant": "full_int8", "sha256": "abc"},  # neither labels nor input_size
        "inference_ms": body["inference_ms"],
    }
    assert isinstance(body["inference_ms"], float) and 0 <= body["inference_ms"] < 60_000
    assert runner.batches == [((1, 8, 8, 3), np.float32)]  # the photo at the model's input size
    log = logged(capsys)
    assert (log["request_id"], log["event"], log["status"], log["top"], log["probability"]) == (
        "r-1", "direct", 200, "shoes", 0.75
    )  # fmt: skip
    assert log["inference_ms"] == body["inference_ms"] and log["total_ms"] >= 0 and "error" not in log


def test_an_http_api_request_is_answered_as_json_in_a_proxy_response(monkeypatch, capsys):
    serve_with(monkeypatch, StandIn())
    answer = handler.lambda_handler(http_api(photo(), "image/png"), CONTEXT)
    assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert (answer["statusCode"], answer["headers"], answer["isBase64Encoded"]) == (
        200, {"Content-Type": "application/json"}, False
    )  # fmt: skip
    assert json.loads(answer["body"])["predictions"] == SHOES_FIRST
    assert logged(capsys)["event"] == "http_api"


def test_what_the_client_sent_wrong_is_its_4xx_with_why_and_a_form_gets_the_hint(monkeypatch, capsys):
    serve_with(monkeypatch, StandIn())
    url = handler.lambda_handler({"url": "ftp://example.com/a.jpg"}, CONTEXT)
    assert url == {"statusCode": 400, "error": "only http(s) URLs are fetched, got ftp scheme"}
    assert logged(capsys)["error"] == url["error"]
    not_image = "not an image (unrecognised format; accepted: JPEG, PNG, WEBP, GIF, BMP)"
    assert handler.lambda_handler({"image": base64.b64encode(b"hello").decode()}, CONTEXT) == {
        "statusCode": 415,
        "error": not_image,
    }  # no hint: nothing says form
    capsys.readouterr()
    form = handler.lambda_handler(http_api(multipart(b"hello"), f"multipart/form-data; boundary={BOUNDARY}"))
    assert form["statusCode"] == 415
    hint = f"the body is a multipart form (curl -F): {handler.UPLOAD_HINT}"
    assert json.loads(form["body"]) == {"error": not_image, "hint": hint}
    log = logged(capsys)
    assert (log["status"], log["error"], log["request_id"]) == (415, not_image, None)  # no context: no id


def test_our_own_fault_is_a_500_with_the_request_id_and_the_cause_only_in_the_log(monkeypatch, capsys):
    serve_with(monkeypatch, StandIn(error=RuntimeError("the interpreter broke")))
    answer = handler.lambda_handler({"image": base64.b64encode(photo()).decode()}, CONTEXT)
    assert answer == {"statusCode": 500, "error": "internal error", "request_id": "r-1"}
    log = logged(capsys)
    assert (log["status"], log["error"]) == (500, "RuntimeError: the interpreter broke")
    assert "Traceback" in log["traceback"] and "the interpreter broke" in log["traceback"]


def test_health_answers_which_model_and_503_when_it_cannot_load(monkeypatch, capsys):
    serve_with(monkeypatch, StandIn())
    answer = handler.lambda_handler({"httpMethod": "GET", "path": "/health"}, CONTEXT)
    assert (answer["statusCode"], json.loads(answer["body"])) == (
        200, {"status": "ok", "model": {"variant": "full_int8", "sha256": "abc"}}
    )  # fmt: skip
    log = logged(capsys)
    assert (log["route"], log["status"], log["event"], log["request_id"]) == ("health", 200, "rest_api", "r-1")
    assert "error" not in log and "_aws" not in log  # no metrics: the alarms do not count health checks

    def cannot_load():
        raise FileNotFoundError("model.tflite")

    monkeypatch.setattr(handler, "model", cannot_load)
    answer = handler.lambda_handler({"httpMethod": "GET", "path": "/health"}, CONTEXT)
    body = {"status": "unavailable", "error": "FileNotFoundError: model.tflite"}
    assert (answer["statusCode"], json.loads(answer["body"])) == (503, body)
    log = logged(capsys)
    assert (log["status"], log["error"]) == (503, body["error"])


def test_classes_ranks_by_probability_a_tie_to_the_first_label_and_checks_the_count():
    e = math.e  # logits 1, 1, 0: probabilities e / (2e + 1) twice and 1 / (2e + 1)
    ranked = handler.classes(np.array([[1.0, 1.0, 0.0]]), ["a", "b", "c"])
    high, low = round(e / (2 * e + 1), 6), round(1 / (2 * e + 1), 6)
    assert ranked == {
        "top": "a",
        "probability": high,
        "predictions": [
            {"label": "a", "probability": high},
            {"label": "b", "probability": high},
            {"label": "c", "probability": low},
        ],
    }
    assert handler.classes(np.array([[0.0, math.log(3)]]), ["hat", "shoes"])["predictions"] == SHOES_FIRST
    with pytest.raises(RuntimeError, match=r"^the model has 3 outputs and its metadata 2 labels$"):
        handler.classes(np.array([[1.0, 1.0, 0.0]]), ["a", "b"])


def test_respond_returns_a_direct_body_as_is_and_wraps_the_rest():
    assert handler.respond("direct", 200, {"top": "hat"}) == {"top": "hat"}
    assert handler.respond("direct", 413, {"error": "big"}) == {"statusCode": 413, "error": "big"}
    for kind in ("http_api", "rest_api"):
        assert handler.respond(kind, 413, {"error": "big"}) == {
            "statusCode": 413,
            "headers": {"Content-Type": "application/json"},
            "body": '{"error": "big"}',
            "isBase64Encoded": False,
        }


def test_the_model_s_metadata_must_be_beside_it_and_name_its_labels(tmp_path):
    model = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError) as error:
        handler.load_model_info(model)
    assert str(error.value) == (
        f"{tmp_path / 'model.json'} not found: the model's labels travel in it (the convert stage writes it)"
    )
    (tmp_path / "model.json").write_text(json.dumps({"labels": [], "variant": "v"}))
    with pytest.raises(RuntimeError) as error:
        handler.load_model_info(model)
    assert str(error.value) == f"{tmp_path / 'model.json'} names no labels"
    (tmp_path / "model.json").write_text(json.dumps(INFO))
    assert handler.load_model_info(model) == INFO


def ticking(*seconds):
    """A perf_counter that answers these readings in turn: the handler's timings, known to the digit."""
    readings = iter(seconds)
    return SimpleNamespace(perf_counter=lambda: next(readings))


def test_the_log_and_its_metrics_carry_the_timings_the_function_and_the_served_variant(monkeypatch, capsys, tmp_path):
    """lambda_handler 88-94, predict 29, 31, 32 (total_ms and inference_ms, which the latency alarms read),
    104 (the context's function and version as the metrics' dimensions), 105 (the variant beside the model).
    Clock readings: the request at 1.0 s, the model from 1.5 to 1.5123456 s, the answer at 2.0123456 s: by hand
    inference_ms round(12.3456, 2) = 12.35 and total_ms round(1012.3456, 2) = 1012.35."""
    serve_with(monkeypatch, StandIn())
    monkeypatch.setattr(handler, "MODEL_PATH", tmp_path / "model.tflite")
    (tmp_path / "model.json").write_text(json.dumps(INFO))
    monkeypatch.setattr(handler, "time", ticking(1.0, 1.5, 1.5123456, 2.0123456))
    body = handler.lambda_handler({"image": base64.b64encode(photo()).decode()}, CONTEXT)
    assert body["inference_ms"] == 12.35
    log = logged(capsys)
    assert (log["inference_ms"], log["total_ms"]) == (12.35, 1012.35)
    assert (log["function"], log["version"], log["variant"]) == ("clothes", "3", "full_int8")


def test_a_health_check_logs_its_time(monkeypatch, capsys):
    """answer_health 15-29 (total_ms): the check from 1.0 to 1.2345678 s is round(234.5678, 2) = 234.57 ms."""
    serve_with(monkeypatch, StandIn())
    monkeypatch.setattr(handler, "time", ticking(1.0, 1.2345678))
    answer = handler.lambda_handler({"httpMethod": "GET", "path": "/health"}, CONTEXT)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "ok"
    assert logged(capsys)["total_ms"] == 234.57


def test_a_url_is_fetched_under_the_function_s_limits(monkeypatch, capsys):
    """lambda_handler 27-35: the fetch gets the allowed hosts (none unless set), the size cap (fetch.MAX_BYTES,
    10 MiB), the 5 s deadline and the allowed ports (80 and 443 unless set)."""
    serve_with(monkeypatch, StandIn())
    calls = []

    def fetched(*args, **kwargs):
        calls.append((args, kwargs))
        return photo()

    monkeypatch.setattr(handler, "fetch", fetched)
    body = handler.lambda_handler({"url": "https://example.com/a.jpg"}, CONTEXT)
    assert body["top"] == "shoes"
    assert calls == [
        (
            ("https://example.com/a.jpg", frozenset(), 10 * 1024 * 1024),
            {"timeout": 5.0, "allowed_ports": frozenset({80, 443})},
        )
    ]
    assert logged(capsys)["status"] == 200


def test_the_logged_traceback_keeps_eight_frames(monkeypatch, capsys):
    """lambda_handler 79, 80 (format_exc's limit): an error raised some twenty calls deep logs the handler's frame
    and seven below it, so one log line stays small."""

    def down(n):  # down and further take turns: Python folds a line repeated more than three times in a row
        if n == 0:
            raise RuntimeError("deep down")
        further(n - 1)

    def further(n):
        down(n)

    class Deep(StandIn):
        def logits(self, batch):
            down(10)

    serve_with(monkeypatch, Deep())
    assert handler.lambda_handler({"image": base64.b64encode(photo()).decode()}, CONTEXT)["statusCode"] == 500
    assert logged(capsys)["traceback"].count('  File "') == 8


def test_ties_among_many_classes_keep_the_labels_order():
    """classes 8, 10 (numpy's default sort, not stable: among 30 classes it reorders ties). Logits 0, ln 2, 0,
    ln 3, 0, ln 2 five times: probabilities 1, 2, 1, 3, 1, 2 fiftieths; by hand, the 3s in label order, then
    the 2s, then the 1s."""
    logits = np.array([[0.0, math.log(2), 0.0, math.log(3), 0.0, math.log(2)] * 5])
    ranked = handler.classes(logits, [f"c{i}" for i in range(30)])["predictions"]
    threes = [3, 9, 15, 21, 27]
    twos = [1, 5, 7, 11, 13, 17, 19, 23, 25, 29]
    ones = list(range(0, 30, 2))
    assert [p["label"] for p in ranked] == [f"c{i}" for i in threes + twos + ones]
    assert [p["probability"] for p in ranked] == [0.06] * 5 + [0.04] * 10 + [0.02] * 15
