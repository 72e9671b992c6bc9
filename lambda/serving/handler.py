"""AWS Lambda handler: a photo in, the class and every class's probability out (the labels, in the
model's output order, come from the model's metadata, model.json beside model.tflite / model.onnx).

Answers direct invocations ({"url": ...} or {"image": "<base64>"}) and API Gateway proxy events
(HTTP API payload 2.0, REST API payload 1.0; a function URL's are 2.0) with a JSON body or a raw image
body; GET /health answers whether the model loads (docs/function.md). Imports no TensorFlow: LiteRT,
numpy, Pillow, and this package's images/runtime modules.
"""

import base64
import binascii
import functools
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving import metrics
from serving.fetch import MAX_BYTES, PORTS, FetchError, fetch
from serving.images import ImageError, NotAnImage, preprocess, softmax
from serving.runtime import ONNXModel, TFLiteModel, load_model

# The function's own configuration (set by deploy, or by `make serve`). The image and the zip put
# the one model beside this package: $LAMBDA_TASK_ROOT/model/model.tflite or model.onnx.
MODEL_DIR = Path(__file__).resolve().parents[1] / "model"
STAGED = [MODEL_DIR / "model.tflite", MODEL_DIR / "model.onnx"]
MODEL_PATH = Path(os.environ.get("MODEL_PATH") or next((p for p in STAGED if p.exists()), STAGED[0]))
NUM_THREADS = int(os.environ.get("NUM_THREADS", os.cpu_count() or 1))
# Hosts whose addresses are not checked: for local tests against 127.0.0.1 only, never in AWS.
ALLOWED_HOSTS = frozenset(filter(None, os.environ.get("ALLOWED_HOSTS", "").split(",")))
# Ports URLs may name (80 and 443 unless set): refusing the rest keeps error messages from mapping ports.
ALLOWED_PORTS = frozenset(int(p) for p in os.environ.get("ALLOWED_PORTS", "").split(",") if p) or PORTS
MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
MAX_IMAGE_BYTES = MAX_BYTES
FETCH_TIMEOUT_S = 5.0  # one deadline over the whole fetch: DNS, connect, TLS, headers, body, redirects


class BadRequest(ValueError):
    """The request itself is wrong. Each class is the HTTP status it gets."""

    status = 400


class PayloadTooLarge(BadRequest):
    status = 413


# What a client can cause, each carrying its status: everything else is the function's own fault (500).
CLIENT_ERRORS = (BadRequest, FetchError, ImageError)


def load_model_info(path: Path) -> dict:
    """The model's metadata beside it (the convert stage writes it, deploy ships it as model.json): its
    labels in output order, and the variant and content hash the answer reports. Without labels the
    function cannot name a class: a 500, logged with this reason."""
    info_path = path.with_suffix(".json")
    if not info_path.exists():
        raise RuntimeError(f"{info_path} not found: the model's labels travel in it (the convert stage writes it)")
    info = json.loads(info_path.read_text())
    if not info.get("labels"):
        raise RuntimeError(f"{info_path} names no labels")
    return info


@functools.cache
def model() -> "tuple[TFLiteModel | ONNXModel, dict]":
    """Loaded once per container, on the first request that needs it: every warm request reuses it."""
    return load_model(MODEL_PATH, num_threads=NUM_THREADS), load_model_info(MODEL_PATH)  # .tflite or .onnx


@functools.cache  # every request's metrics name it: read once per model, not per request
def model_variant(path: Path) -> str:
    """The served variant, for the metrics' dimension: from the file beside the model (a request whose
    model failed to load is counted under it too), else the model file's name."""
    try:
        return json.loads(path.with_suffix(".json").read_text())["variant"]
    except (OSError, ValueError, KeyError, TypeError):
        return path.stem


@dataclass(frozen=True)
class Request:
    kind: str  # direct | http_api | rest_api
    url: "str | None" = None
    image: "bytes | None" = None
    content_type: str = ""  # the HTTP request's, for the hint on a body that is no image


HEALTH_PATH = "/health"
# A body sent as a form: curl -F file=@photo.jpg (multipart/form-data) or curl -d @photo.jpg (a form,
# with the file's line breaks removed). Either is no image; the answer says how to send one.
MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"
UPLOAD_HINT = (
    "send the photo's bytes as the body: curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' URL "
    '(or JSON: {"url": ...} or {"image": "<base64>"})'
)


def _decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"'{what}' is not valid base64") from None


def _from_fields(kind: str, fields) -> Request:
    if not isinstance(fields, dict):
        raise BadRequest("the request must be a JSON object with 'url' or 'image'")
    url, image = fields.get("url"), fields.get("image")
    if (url is None) == (image is None):
        raise BadRequest("give exactly one of 'url' (http(s) address) or 'image' (base64 string)")
    if url is not None:
        if not isinstance(url, str) or not url:
            raise BadRequest("'url' must be a non-empty string")
        return Request(kind, url=url)
    if not isinstance(image, str) or not image:
        raise BadRequest("'image' must be a non-empty base64 string")
    if len(image) > _base64_length(MAX_BODY_BYTES):
        raise PayloadTooLarge(f"'image' is larger than Lambda's {MAX_BODY_BYTES:,}-byte payload limit")
    return Request(kind, image=_decode_base64(image, "image"))


def _base64_length(n: int) -> int:
    return (n + 2) // 3 * 4


def event_kind(event) -> str:
    if isinstance(event, dict) and event.get("version") == "2.0":
        return "http_api"
    if isinstance(event, dict) and "httpMethod" in event:
        return "rest_api"
    return "direct"


def parse_event(event) -> Request:
    """Any supported event shape to one typed request."""
    if not isinstance(event, dict):
        raise BadRequest("the event must be a JSON object")
    kind = event_kind(event)
    if kind != "direct":
        body = event.get("body") or ""
        if not isinstance(body, str):
            raise BadRequest("the event's 'body' must be a string")
        if len(body) > _base64_length(MAX_BODY_BYTES):
            raise PayloadTooLarge(f"the body is larger than Lambda's {MAX_BODY_BYTES:,}-byte payload limit")
        raw = _decode_base64(body, "body") if event.get("isBase64Encoded") is True else _utf8(body)
        if not raw:
            raise BadRequest("empty body: send an image, or JSON with 'url' or 'image'")
        headers = event.get("headers") or {}
        if not isinstance(headers, dict):
            raise BadRequest("the event's 'headers' must be an object")
        headers = {str(k).lower(): v for k, v in headers.items()}
        content_type = str(headers.get("content-type", "")).split(";")[0].strip().lower()
        if content_type == "application/json" or raw[:1] == b"{":
            try:
                fields = json.loads(raw)
            except (ValueError, RecursionError):  # also too deep a nesting, or an integer of 5,000 digits
                raise BadRequest("the body is not valid JSON") from None
            return _from_fields(kind, fields)
        return Request(kind, image=raw, content_type=content_type)
    return _from_fields("direct", event)


def is_health(event) -> bool:
    """GET /health, from an HTTP API or function URL (payload 2.0) or a REST API (1.0)."""
    if not isinstance(event, dict):
        return False
    request_context = event.get("requestContext")
    http = request_context.get("http") if isinstance(request_context, dict) else None
    if isinstance(http, dict):
        method, path = http.get("method"), event.get("rawPath") or http.get("path")
    else:
        method, path = event.get("httpMethod"), event.get("path")
    return method == "GET" and path == HEALTH_PATH


def upload_hint(request: "Request | None") -> "str | None":
    """How to send a photo, when the body that was no image looks like a form upload."""
    if request is None or request.image is None:
        return None
    multipart = request.content_type == MULTIPART or (
        request.image[:2] == b"--" and b"content-disposition: form-data" in request.image[:1024].lower()
    )
    if multipart:
        return f"the body is a multipart form (curl -F): {UPLOAD_HINT}"
    if request.content_type == FORM:
        return f"the body was sent as a form (curl -d, which also strips a file's line breaks): {UPLOAD_HINT}"
    return None


def health() -> dict:
    """The model loads (the first health check of a container loads it) and which one it is."""
    _, info = model()
    return {"status": "ok", "model": {k: v for k, v in info.items() if k not in ("labels", "input_size")}}


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise BadRequest("the body is not valid UTF-8") from None


def predict(image_bytes: bytes) -> dict:
    runner, info = model()
    started = time.perf_counter()
    ranked = classes(runner.logits(preprocess(image_bytes, runner.input_size)), info["labels"])
    public = {k: v for k, v in info.items() if k not in ("labels", "input_size")}
    return {**ranked, "model": public, "inference_ms": round((time.perf_counter() - started) * 1000, 2)}


def classes(logits: np.ndarray, labels: list) -> dict:
    """The top class and every class, most probable first (bench times this part of the answer on its own)."""
    probs = softmax(logits)[0]
    if len(labels) != len(probs):
        raise RuntimeError(f"the model has {len(probs)} outputs and its metadata {len(labels)} labels")
    # Stable: a tie (int8 outputs tie often) goes to the first label, as argmax does in verify and Keras.
    order = np.argsort(-probs, kind="stable")
    return {
        "top": labels[order[0]],
        "probability": round(float(probs[order[0]]), 6),
        "predictions": [{"label": labels[i], "probability": round(float(probs[i]), 6)} for i in order],
    }


def respond(kind: str, status: int, body: dict) -> dict:
    if kind == "direct":
        return body if status == 200 else {"statusCode": status, **body}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def lambda_handler(event, context=None):
    """Total: every event gets a JSON answer; 4xx for what the client controls, 500 only for our own faults."""
    started = time.perf_counter()
    kind, log = event_kind(event), {"request_id": getattr(context, "aws_request_id", None)}
    if is_health(event):
        return answer_health(kind, log, started)
    request = None
    try:
        request = parse_event(event)
        if request.image is not None:
            image = request.image
        else:
            image = fetch(
                request.url, ALLOWED_HOSTS, MAX_IMAGE_BYTES, timeout=FETCH_TIMEOUT_S, allowed_ports=ALLOWED_PORTS
            )
        status, body = 200, predict(image)
        log.update(top=body["top"], probability=body["probability"], inference_ms=body["inference_ms"])
    except CLIENT_ERRORS as e:
        status, body = e.status, {"error": str(e)}
        log["error"] = str(e)
        if isinstance(e, NotAnImage) and (hint := upload_hint(request)):
            body["hint"] = hint
    except Exception as e:  # our own fault: answered, logged with the request id, never a raw Lambda error
        status, body = 500, {"error": "internal error", "request_id": log["request_id"]}
        log.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
    log.update(event=kind, status=status, total_ms=round((time.perf_counter() - started) * 1000, 2))
    # One JSON line per request: the log, and the request's metrics in CloudWatch's embedded format.
    print(json.dumps(metrics.document(log, context, model_variant(MODEL_PATH)), default=str), flush=True)
    return respond(kind, status, body)


def answer_health(kind: str, log: dict, started: float) -> dict:
    """One log line, without metrics: health checks are not requests the canary's alarms should count."""
    try:
        status, body = 200, health()
    except Exception as e:
        status, body = 503, {"status": "unavailable", "error": f"{type(e).__name__}: {e}"}
    log.update(event=kind, route="health", status=status, total_ms=round((time.perf_counter() - started) * 1000, 2))
    print(json.dumps({**log, **({"error": body["error"]} if status != 200 else {})}, default=str), flush=True)
    return respond(kind, status, body)


def load_for_snapshot(initialization: "str | None") -> bool:
    """During a SnapStart init (Lambda sets AWS_LAMBDA_INITIALIZATION_TYPE=snap-start), the model is loaded
    now: the snapshot then holds it, and an environment restored from it answers without loading. On
    demand, it stays lazy (the first request loads it), as before. Whether it loaded now."""
    if initialization != "snap-start":
        return False
    model()
    return True


load_for_snapshot(os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"))
