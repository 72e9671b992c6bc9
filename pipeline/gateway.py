"""The gateway in front of the runtime interface emulator: answers HTTP as API Gateway (and the Lambda Invoke
API) would, for `make serve` and the tests; with door="function_url", as a Lambda function URL would
(docs/endpoints.md: every path and method reaches the function, with routeKey "$default"; a text body
passed as text; a function error answered 502 "Internal Server Error" as plain text, not API Gateway's JSON).

  POST /2015-03-31/functions/function/invocations  - the Invoke API: passed to the emulator, its answer back
  POST /predict                                    - an HTTP request turned into an API Gateway
                                                     HTTP API (payload 2.0) proxy event
  GET /health                                      - the same, a GET: the function answers whether
                                                     its model loads
Always a JSON answer, never a dropped connection: 502 when the function fails or times out; 413, 400,
411 and 408 for what the client sent (too large, a bad Content-Length, chunked, too slow); 404 for
anything else. Requests go to the emulator one at a time: one Lambda execution environment handles
one invocation at a time (the emulator crashes on overlapping ones).
"""

import base64
import contextlib
import http.client
import http.server
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request

HEALTH_PATH = "/health"  # the handler answers GET on it (serving.handler.HEALTH_PATH)
INVOKE_PATH = "/2015-03-31/functions/function/invocations"  # the Lambda Invoke API's path, as the emulator serves it
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit: API Gateway answers 413 above it
SOCKET_TIMEOUT_S = 30  # a client that stops sending holds a connection no longer than this
CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")
URL_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded")
DOORS = ("http_api", "function_url")  # deploy.endpoint's choices: which door the gateway plays
URL_FUNCTION_ERROR = b"Internal Server Error"  # a function URL's answer to a function error (502, text/plain)


def http_api_event(path: str, headers: dict, body: bytes, method: str = "POST") -> dict:
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def function_url_event(path: str, headers: dict, body: bytes, method: str = "POST", query: str = "") -> dict:
    """The payload format 2.0 event a function URL sends: routeKey and stage "$default" whatever the path,
    a text body (JSON, text/*) as text, any other base64-encoded, no body key for an empty one."""
    lowered = {k.lower(): v for k, v in headers.items()}
    host = lowered.get("host", "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws")
    url_id = host.split(".")[0]
    text = lowered.get("content-type", "").split(";")[0].strip() in URL_TEXT_TYPES or lowered.get(
        "content-type", ""
    ).startswith("text/")
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": host,
            "domainPrefix": url_id,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": lowered.get("user-agent", ""),
            },  # fmt: skip
            "requestId": f"{int(now * 1e6):x}",
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not text,
    }
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if text else base64.b64encode(body).decode()
    return event


def error_body(message: str, **detail) -> bytes:
    return json.dumps({"message": message, **detail}).encode()


def function_error(status: "int | None", headers, body: bytes) -> "str | None":
    """Why the emulator's answer is a function error (as Lambda reports them), or None for a result."""
    if status is None:
        return f"the function did not answer: {body.decode(errors='replace')}"
    if status != 200:
        return f"the emulator answered HTTP {status}: {body[:200].decode(errors='replace')}"
    if headers.get("X-Amz-Function-Error"):
        return f"function error ({headers['X-Amz-Function-Error']}): {body[:500].decode(errors='replace')}"
    try:
        answer = json.loads(body)
    except ValueError:
        return f"the function's answer is not JSON: {body[:200].decode(errors='replace')}"
    if isinstance(answer, dict) and "errorType" in answer:  # how the emulator reports crashes and timeouts
        return f"{answer['errorType']}: {answer.get('errorMessage', '')}"
    return None


def proxy_response(body: bytes) -> "tuple[int, bytes, str] | None":
    """(status, body, content type) of a Lambda proxy integration answer; None when malformed."""
    proxy = json.loads(body)
    if not isinstance(proxy, dict) or type(proxy.get("statusCode")) is not int:
        return None
    status, text, headers = proxy["statusCode"], proxy.get("body", ""), proxy.get("headers") or {}
    if not 100 <= status <= 599 or not isinstance(text, str) or not isinstance(headers, dict):
        return None
    try:
        data = base64.b64decode(text, validate=True) if proxy.get("isBase64Encoded") else text.encode()
    except ValueError:
        return None
    content_type = {str(k).lower(): v for k, v in headers.items()}.get("content-type", "application/json")
    return status, data, str(content_type)


def make_gateway(
    emulator_url: str, invoke_timeout_s: float = 70, socket_timeout_s: float = SOCKET_TIMEOUT_S, door: str = "http_api"
):
    """An HTTP handler class answering as API Gateway (and the Lambda Invoke API) would: always JSON, never a
    dropped connection; 502 when the function fails or times out, 413/400/408 for what the client sent.
    door="function_url": as a function URL would (every path; its own 502)."""
    url = door == "function_url"
    lock = threading.Lock()

    def invoke(payload: bytes) -> tuple["int | None", dict, bytes]:
        with lock:
            request = urllib.request.Request(emulator_url + INVOKE_PATH, data=payload, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=invoke_timeout_s) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read()
            except (OSError, http.client.HTTPException) as e:  # emulator down or timed out
                return None, {}, f"{type(e).__name__}: {e}".encode()

    class Gateway(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        default_request_version = "HTTP/1.0"  # even an answer to a garbled request line gets a status line
        timeout = socket_timeout_s

        def reply(self, status: int, body: bytes, content_type: str = "application/json", headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def send_error(self, code, message=None, explain=None):
            """http.server's own errors (bad request line, headers too long, unknown method) as JSON; its 5xx
            for a request it cannot parse are the client's 4xx, and a method with no route is a 404."""
            self.close_connection = True
            if code >= 500:
                code, message = (404, "Not Found") if code == 501 else (400, None)
            self.reply(code, error_body(message or self.responses.get(code, ("error",))[0]))

        def parse_request(self):
            try:
                return super().parse_request()
            except TimeoutError:  # headers that stopped coming (an idle connection is closed quietly, as usual)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.reply(408, error_body("the request headers took too long to arrive"))
                return False

        def drain(self, length: int) -> None:
            """Read and drop what the client is still sending, so the answer reaches it before the close."""
            self.connection.settimeout(1)
            give_up = time.monotonic() + 5
            with contextlib.suppress(OSError):
                while length > 0 and time.monotonic() < give_up and (chunk := self.rfile.read1(min(length, 1 << 20))):
                    length -= len(chunk)

        def read_body(self) -> "bytes | None":
            """The request body, or None after answering why it cannot be read."""
            self.close_connection = True  # after any refusal, the stream cannot be trusted to be in step
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.reply(411, error_body("send the body with a Content-Length, not chunked"))
                return None
            lengths = {value.strip() for value in self.headers.get_all("Content-Length") or ["0"]}
            text = lengths.pop() if len(lengths) == 1 else ""
            if not CONTENT_LENGTH.fullmatch(text):
                self.reply(400, error_body("invalid Content-Length header"))
                return None
            length = int(text)
            if length > MAX_PAYLOAD_BYTES:
                self.reply(413, error_body(f"the request is larger than {MAX_PAYLOAD_BYTES:,} bytes"))
                self.drain(min(length, 4 * MAX_PAYLOAD_BYTES))
                return None
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self.reply(408, error_body("the request body took too long to arrive"))
                return None
            if len(body) < length:
                self.reply(400, error_body("the body is shorter than its Content-Length"))
                return None
            self.close_connection = False
            return body

        def do_GET(self):
            if url:
                return self.do_POST()
            if self.path != HEALTH_PATH:
                return self.send_error(501)  # every other GET: the 404 of a method with no route, as before
            self.close_connection = True
            try:
                self.pass_event(http_api_event(self.path, dict(self.headers), b"", method="GET"))
            except Exception as e:
                self.log_error("gateway error: %r", e)
                with contextlib.suppress(OSError):
                    self.reply(500, error_body("Internal Server Error"))

        def do_POST(self):
            try:
                self.route()
            except Exception as e:  # the gateway's own fault: still an answer, never a dropped connection
                self.log_error("gateway error: %r", e)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.reply(500, error_body("Internal Server Error"))

        def route(self):
            if url and self.path != INVOKE_PATH:  # a function URL passes every path and method to the function
                path, _, query = self.path.partition("?")
                body = self.read_body() if self.command != "GET" else b""
                if body is not None:
                    self.pass_event(function_url_event(path, dict(self.headers), body, self.command, query))
                return
            if self.path not in (INVOKE_PATH, "/predict"):
                self.close_connection = True
                return self.reply(404, error_body("Not Found"))
            body = self.read_body()
            if body is None:
                return
            if self.path == INVOKE_PATH:  # the Invoke API: function errors come back as Lambda gives them
                try:  # UTF-8 only: json.loads alone reads a leading NUL as UTF-16, which the runtime refuses
                    json.loads(body.decode("utf-8"))
                except (ValueError, RecursionError):  # the Invoke API's own check, before any function runs
                    return self.reply(400, error_body("Could not parse request body into json"))
                status, headers, answer = invoke(body)
                if status is None:
                    return self.reply(502, error_body("Bad Gateway", error=answer.decode(errors="replace")))
                extra = (
                    {"X-Amz-Function-Error": headers["X-Amz-Function-Error"]}
                    if headers.get("X-Amz-Function-Error")
                    else {}
                )
                return self.reply(status, answer, headers=extra)
            self.pass_event(http_api_event(self.path, dict(self.headers), body))

        def pass_event(self, event: dict) -> None:
            """An API Gateway event to the function, its proxy answer back (502 when there is none)."""
            payload = json.dumps(event).encode()
            if len(payload) > MAX_PAYLOAD_BYTES:
                limit = f"Lambda's {MAX_PAYLOAD_BYTES:,}-byte payload limit"
                return self.reply(413, error_body(f"the request, base64-encoded, is larger than {limit}"))
            status, headers, answer = invoke(payload)
            failure = function_error(status, headers, answer)
            response = None if failure else proxy_response(answer)
            if url and response is None and not failure:  # a function URL takes any other JSON as a 200 body
                response = (200, answer, "application/json")
            if url and response is None:
                self.log_error("function error: %s", failure)
                return self.reply(502, URL_FUNCTION_ERROR, "text/plain")
            if response is None:
                self.log_error("function error: %s", failure or "malformed proxy response")
                return self.reply(502, error_body("Internal Server Error", error=failure or "malformed response"))
            self.reply(*response)

        def log_message(self, fmt, *args):
            pass  # the handler logs one JSON line per request itself

        def log_error(self, fmt, *args):
            print(f"gateway: {fmt % args}", file=sys.stderr, flush=True)

    return Gateway
