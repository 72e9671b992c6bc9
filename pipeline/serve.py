"""Run the handler locally under the real Lambda runtime interface, without Docker or AWS.

The AWS Runtime Interface Emulator (from the aws-sam-cli wheel) runs `python -m awslambdaric
serving.handler.lambda_handler` exactly as the official base image does. In front of it, on one port,
the gateway (pipeline/gateway.py) serves the Invoke API's path, POST /predict and GET /health as API
Gateway would. One line per request on stdout (--verbose: everything the emulator and the function print,
Lambda's START/END/REPORT lines and the function's whole JSON log line with its metrics).
"""

import argparse
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline import params, paths, variants
from pipeline.gateway import DOORS, HEALTH_PATH, INVOKE_PATH, SOCKET_TIMEOUT_S, make_gateway
from pipeline.ports import free_port
from serving import HANDLER

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "lambda"  # what the image's $LAMBDA_TASK_ROOT holds: the serving package
# What the emulator prints around each request, dropped unless --verbose: Lambda's START/END/REPORT
# lines (AWS prints them too, in CloudWatch Logs), the emulator's own INFO lines (its warning about
# running without AWS credentials among them) and LiteRT's note when it loads the model.
NOISE = re.compile(r"^(START|END|REPORT) RequestId: |\[INFO\] \(rapid\) |^INFO: Created TensorFlow Lite XNNPACK")


def request_line(line: str) -> "str | None":
    """The function's JSON log line of a request (its EMF metrics included) as one short line; None for
    any other line."""
    if not line.startswith("{"):
        return None
    try:
        log = json.loads(line)
    except ValueError:
        return None
    if not isinstance(log, dict) or "status" not in log:
        return None
    what = log.get("route") or log.get("event", "")
    if "error" in log:
        told = f"{log['status']} {what}: {log['error']}"
    elif "top" in log:
        told = f"{log['status']} {what}: {log['top']} {log['probability']:.3f}, model {log['inference_ms']} ms"
    else:
        told = f"{log['status']} {what}"
    told += f", total {log.get('total_ms')} ms"
    return told + ("\n" + log["traceback"].rstrip() if log.get("traceback") else "")


def pass_output(stream, out, verbose: bool) -> None:
    """The emulator's output to ours as it comes: all of it (verbose), or a line per request and
    whatever else is neither noise nor a request (errors, warnings)."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        if not verbose:
            if NOISE.search(line):
                continue
            short = request_line(line)
            line = f"{time.strftime('%H:%M:%S')} {short}\n" if short else line
        out.write(line)
        out.flush()


def start_emulator(
    rie: Path,
    model: Path,
    port: int,
    allowed_hosts: str,
    num_threads: int,
    function_timeout_s: int,
    allowed_ports: str = "",
    handler: str = HANDLER,
    function_path: str = "",
    output=None,
) -> subprocess.Popen:
    env = {
        **os.environ,
        "MODEL_PATH": str(model.resolve()),
        "ALLOWED_HOSTS": allowed_hosts,
        "ALLOWED_PORTS": allowed_ports,
        "NUM_THREADS": str(num_threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FUNCTION_DIR), function_path])),
        "LAMBDA_TASK_ROOT": str(FUNCTION_DIR),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function_timeout_s),
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
            handler,
        ],
        cwd=FUNCTION_DIR,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


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


def launch(
    model: Path, num_threads: int, log=subprocess.DEVNULL, poll_s: float = 0.1, extra_args: tuple = ()
) -> tuple[subprocess.Popen, str]:
    """This script in a child process on free loopback ports; returns it and its base URL once it answers.
    extra_args: more of main()'s options, e.g. ("--function-timeout", "2")."""
    for attempt in range(3):  # another process may still bind one of the ports first: then new ones
        port, emulator_port = free_port(), free_port(span=2)  # the emulator also takes emulator_port + 1
        while port in (emulator_port, emulator_port + 1):
            port = free_port()
        logged = log.seek(0, os.SEEK_END) if _readable(log) else None
        process = _start(model, num_threads, log, port, emulator_port, extra_args)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base + "/", process, timeout=60, poll_s=poll_s)
        except RuntimeError:
            process.kill()
            process.wait(timeout=10)
            if attempt == 2 or process.returncode != 1 or logged is None or not _lost_a_port(log, logged):
                raise
            continue
        return process, base


def _readable(log) -> bool:
    """A text log this process can read back (a caller's "w+" file); DEVNULL or a write-only file is not."""
    return isinstance(log, io.TextIOBase) and log.readable()


def _lost_a_port(log, since: int) -> bool:
    """This start's lines (from offset since) say a port was taken: the emulator's (Go: "address already
    in use") or the gateway's (Python: "Address already in use")."""
    log.seek(since)
    return "address already in use" in log.read().lower()


def _start(model: Path, num_threads: int, log, port: int, emulator_port: int, extra_args: tuple) -> subprocess.Popen:
    return subprocess.Popen(
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
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def recommended_model() -> Path:
    """The recommend stage's choice (what deploy ships unless deploy.variant names another), never a
    variant verify excluded."""
    path = ROOT / paths.RECOMMENDATION
    if not path.exists():
        raise SystemExit(
            f"error: {paths.RECOMMENDATION} not found: run `dvc repro` first, or name a variant (make serve "
            "VARIANT=..., --variant) or a model file (--model)"
        )
    return ROOT / json.loads(path.read_text())["model"]


def variant_model(variant: str, made: list) -> Path:
    """The model file of a variant the convert stage makes (convert.variants): the name deploy takes too."""
    if variant not in made:
        raise SystemExit(f"error: unknown variant {variant!r}: convert.variants makes {', '.join(made)}")
    model = ROOT / variants.model_path(variant)
    if not model.exists():
        raise SystemExit(f"error: {model} not found: run `dvc repro` first")
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--variant", help=f"a variant of convert.variants to serve (default: {paths.RECOMMENDATION}'s)")
    chosen.add_argument("--model", type=Path, help="a model file to serve (model.json with its labels beside it)")
    parser.add_argument(
        "--verbose", action="store_true", help="everything the emulator and function print, not a line per request"
    )
    parser.add_argument("--rie", type=Path, default=ROOT / ".cache/aws-lambda-rie-x86_64")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--emulator-port", type=int, default=8090, help="and the next one for the runtime API")
    parser.add_argument("--allow-hosts", default="", help="comma-separated hosts exempt from the SSRF check (tests)")
    parser.add_argument("--allow-ports", default="", help="comma-separated ports URLs may name (default 80,443)")
    parser.add_argument("--num-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--function-timeout", type=int, help="seconds (default: params.yaml deploy.timeout_s)")
    parser.add_argument("--handler", default=HANDLER, help="module.function the runtime calls")
    parser.add_argument(
        "--function-path", default="", help="a folder added to the function's PYTHONPATH (a --handler's)"
    )
    parser.add_argument("--socket-timeout", type=float, default=SOCKET_TIMEOUT_S, help="seconds a client may stall")
    parser.add_argument(
        "--door",
        choices=DOORS,
        default="http_api",
        help="answer /predict as an HTTP API, or every path as a function URL",
    )
    args = parser.parse_args()
    p = params.load(ROOT / "params.yaml")
    if args.function_timeout is None:
        args.function_timeout = p.deploy.timeout_s
    if args.variant:
        args.model = variant_model(args.variant, p.convert.variants)
    if args.model is None:
        args.model = recommended_model()
    for path, what in ((args.model, "model"), (args.rie, "runtime interface emulator (make rie)")):
        if not path.exists():
            raise SystemExit(f"error: {what} not found at {path}")

    # `kill` (SIGTERM) must stop the emulator too, not orphan it on its port.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    emulator = start_emulator(
        args.rie,
        args.model,
        args.emulator_port,
        args.allow_hosts,
        args.num_threads,
        args.function_timeout,
        args.allow_ports,
        args.handler,
        args.function_path,
        output=subprocess.PIPE,
    )
    passing = threading.Thread(target=pass_output, args=(emulator.stdout, sys.stdout, args.verbose))
    passing.start()
    try:
        try:
            wait_until_up(f"http://127.0.0.1:{args.emulator_port}/", emulator)
        except RuntimeError as e:
            raise SystemExit(f"error: the emulator did not start: {e}") from None
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", args.port),
            make_gateway(
                f"http://127.0.0.1:{args.emulator_port}",
                invoke_timeout_s=args.function_timeout + 30,
                socket_timeout_s=args.socket_timeout,
                door=args.door,
            ),
        )
        server.daemon_threads = True
        base = f"http://127.0.0.1:{args.port}"
        print(f"serving {args.model} on {base}{INVOKE_PATH}, {base}/predict and {base}{HEALTH_PATH}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        passing.join(timeout=5)  # its last words (an error) reach the log before this process ends


if __name__ == "__main__":
    main()
