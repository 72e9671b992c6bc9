"""Event parsing without a model: the handler module imports without one and loads it lazily."""

import base64
import json
import os
import subprocess
import sys

import pytest

from serving import handler
from support import ROOT


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_direct_url_and_image():
    assert handler.parse_event({"url": "https://example.com/a.jpg"}) == handler.Request(
        "direct", url="https://example.com/a.jpg"
    )
    assert handler.parse_event({"image": b64(b"\xff\xd8abc")}) == handler.Request("direct", image=b"\xff\xd8abc")


def test_http_api_json_body_and_raw_body():
    event = {
        "version": "2.0",
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"url": "http://x/y"}),
    }
    assert handler.parse_event(event) == handler.Request("http_api", url="http://x/y")
    raw = {"version": "2.0", "headers": {}, "body": b64(b"\x89PNG..."), "isBase64Encoded": True}
    assert handler.parse_event(raw) == handler.Request("http_api", image=b"\x89PNG...")


def test_rest_api_event():
    event = {
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": '{"image": "' + b64(b"xy") + '"}',
    }
    assert handler.parse_event(event) == handler.Request("rest_api", image=b"xy")


@pytest.mark.parametrize(
    ("event", "status", "words"),
    [
        ({}, 400, "exactly one of 'url'"),
        ({"url": "a", "image": "b"}, 400, "exactly one of 'url'"),
        ({"image": "not base64!"}, 400, "not valid base64"),
        ({"version": "2.0", "body": ""}, 400, "empty body"),
        ({"version": "2.0", "headers": {"content-type": "application/json"}, "body": "{nope"}, 400, "not valid JSON"),
    ],
)
def test_bad_events_carry_their_status(event, status, words):
    with pytest.raises(handler.BadRequest) as err:
        handler.parse_event(event)
    assert err.value.status == status and words in str(err.value)


def test_the_module_imports_without_a_model_and_without_tensorflow():
    code = (
        "import sys\nfrom serving import handler\n"
        "assert handler.parse_event({'url': 'http://a/b'}).url == 'http://a/b'\n"
        "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)\n"
    )
    env = {**os.environ, "MODEL_PATH": "/nonexistent/model.tflite", "PYTHONPATH": str(ROOT / "lambda")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
