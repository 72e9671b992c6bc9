"""Run the handler locally under the real Lambda runtime interface, without Docker or AWS.

The AWS Runtime Interface Emulator (from the aws-sam-cli wheel) runs `python -m awslambdaric
serving.handler.lambda_handler` exactly as the official base image does. In front of it, one port serves
  POST /2015-03-31/functions/function/invocations  - passed to the emulator unchanged
  POST /predict                                    - an HTTP request turned into an API Gateway
                                                     HTTP API (payload 2.0) proxy event
Requests go to the emulator one at a time: one Lambda execution environment handles one
invocation at a time (the emulator crashes on overlapping ones).
"""

import argparse
import base64
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "lambda"  # what the image's $LAMBDA_TASK_ROOT holds: the serving package
INVOKE_PATH = "/2015-03-31/functions/function/invocations"  # the Lambda Invoke API's path, as the emulator serves it
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


def start_emulator(rie: Path, model: Path, port: int, allowed_hosts: str, num_threads: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MODEL_PATH": str(model.resolve()),
        "ALLOWED_HOSTS": allowed_hosts,
        "NUM_THREADS": str(num_threads),
        "PYTHONPATH": str(FUNCTION_DIR),
        "LAMBDA_TASK_ROOT": str(FUNCTION_DIR),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
    }
    return subprocess.Popen(
        [
            str(rie),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{port}",
            "--runtime-api-address",
            f"127.0.0.1:{port + 1}",
            sys.executable,
            "-m",
            "awslambdaric",
            "serving.handler.lambda_handler",
        ],
        cwd=FUNCTION_DIR,
        env=env,
    )


def http_api_event(path: str, headers: dict, body: bytes) -> dict:
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": path}, "stage": "$default"},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def make_gateway(emulator_url: str):
    lock = threading.Lock()

    def invoke(payload: bytes) -> tuple[int, bytes]:
        with lock:
            request = urllib.request.Request(emulator_url + INVOKE_PATH, data=payload, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()
            except OSError as e:  # emulator down or timed out: the gateway's fault, not the client's
                return 502, json.dumps({"error": f"the function did not answer: {e}"}).encode()

    class Gateway(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status: int, body: bytes, content_type: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                return self.reply(413, json.dumps({"error": "request body too large"}).encode())
            body = self.rfile.read(length)
            if self.path == INVOKE_PATH:
                return self.reply(*invoke(body))
            if self.path == "/predict":
                status, answer = invoke(json.dumps(http_api_event(self.path, dict(self.headers), body)).encode())
                if status != 200:
                    return self.reply(502, answer)
                proxy = json.loads(answer)
                content_type = proxy.get("headers", {}).get("Content-Type", "application/json")
                return self.reply(proxy["statusCode"], proxy["body"].encode(), content_type)
            self.reply(404, json.dumps({"error": f"no route for POST {self.path}"}).encode())

        def log_message(self, fmt, *args):
            pass  # the handler logs one JSON line per request itself

    return Gateway


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30, poll_s: float = 0.1) -> None:
    """Until something answers HTTP on url (any status); fails if process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{Path(process.args[0]).name} exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (404 on /): up
        except OSError:
            time.sleep(poll_s)
    raise RuntimeError(f"nothing answered on {url} within {timeout:g} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model: Path, num_threads: int, log=subprocess.DEVNULL, poll_s: float = 0.1) -> tuple[subprocess.Popen, str]:
    """This script in a child process on free loopback ports; returns it and its base URL once it answers."""
    port, emulator_port = free_port(), free_port()
    while emulator_port + 1 == port:  # the emulator also takes emulator_port + 1
        emulator_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--emulator-port",
            str(emulator_port),
            "--num-threads",
            str(num_threads),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/", process, timeout=60, poll_s=poll_s)
    except RuntimeError:
        process.kill()
        raise
    return process, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help=".tflite file to serve")
    parser.add_argument("--rie", type=Path, default=ROOT / ".cache/aws-lambda-rie-x86_64")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--emulator-port", type=int, default=8090, help="and the next one for the runtime API")
    parser.add_argument("--allow-hosts", default="", help="comma-separated hosts exempt from the SSRF check (tests)")
    parser.add_argument("--num-threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    for path, what in ((args.model, "model"), (args.rie, "runtime interface emulator (make rie)")):
        if not path.exists():
            raise SystemExit(f"error: {what} not found at {path}")

    # `kill` (SIGTERM) must stop the emulator too, not orphan it on its port.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    emulator = start_emulator(args.rie, args.model, args.emulator_port, args.allow_hosts, args.num_threads)
    try:
        try:
            wait_until_up(f"http://127.0.0.1:{args.emulator_port}/", emulator)
        except RuntimeError as e:
            raise SystemExit(f"error: the emulator did not start: {e}") from None
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", args.port), make_gateway(f"http://127.0.0.1:{args.emulator_port}")
        )
        print(f"serving {args.model} on http://127.0.0.1:{args.port}{INVOKE_PATH} and /predict", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
