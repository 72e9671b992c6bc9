"""What the bench stage runs in a fresh process to time the Lambda handler end to end: the event in
(the photo base64 in it, no network), the JSON answer out, as Lambda bills it.

    python -m pipeline.bench_handler MODEL THREADS RUNS PHOTO [PHOTO ...]

For each thread count (1 and THREADS) and photo, RUNS rounds. Each round times the whole handler
(lambda_handler, then json.dumps of its answer as the runtime does), then each of its stages on
its own, one after another on the same bytes: decode/resize (serving.images.preprocess), the model
(logits) and the rest (parsing the event, base64 included; ranking the classes; the JSON answer);
and the bytes one request writes to the log (log_bytes: CloudWatch Logs bills their ingestion).
The stages are separate measurements, not slices of the handler's run, so that their sum meeting
the total is a check, not an identity. Prints one JSON line: a list of rows.
"""

import base64
import contextlib
import io
import json
import os
import sys
import time

import numpy as np


def rounds(function, runner, info: dict, event: dict, runs: int) -> dict:
    """Milliseconds per round: the handler's total, then decode/resize, model and rest on their own."""
    first = json.dumps(function.lambda_handler(event))  # warm-up: the first prediction allocates
    if '"top"' not in first:
        raise SystemExit(f"the handler did not answer with a prediction: {first[:300]}")
    times = {"total": [], "decode": [], "model": [], "rest": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        json.dumps(function.lambda_handler(event))
        t1 = time.perf_counter()
        request = function.parse_event(event)
        t2 = time.perf_counter()
        x = function.preprocess(request.image, runner.input_size)
        t3 = time.perf_counter()
        logits = runner.logits(x)
        t4 = time.perf_counter()
        json.dumps(function.respond(request.kind, 200, {**function.classes(logits, info["labels"]), "model": info}))
        t5 = time.perf_counter()
        for key, ms in (("total", t1 - t0), ("decode", t3 - t2), ("model", t4 - t3), ("rest", t2 - t1 + t5 - t4)):
            times[key].append(ms * 1000)
    return times


def log_bytes(function, event: dict) -> int:
    """Bytes one warm request writes to stdout (the function's log in Lambda: the EMF line, CloudWatch
    Logs bills its ingestion), measured on a call of its own."""
    written = io.StringIO()
    with contextlib.redirect_stdout(written):
        function.lambda_handler(event)
    return len(written.getvalue().encode())


def summary(times: dict) -> dict:
    total = np.array(times["total"])
    stages = {f"{k}_ms": round(float(np.median(times[k])), 3) for k in ("decode", "model", "rest")}
    return {
        "p50_ms": round(float(np.median(total)), 3),
        "p90_ms": round(float(np.percentile(total, 90)), 3),
        # The total's own spread (median absolute deviation): how far apart two measurements of it fall.
        "noise_ms": round(float(np.median(np.abs(total - np.median(total)))), 3),
        **stages,
        "stages_ms": round(sum(stages.values()), 3),
    }


def main() -> None:
    model_path, threads, runs, photos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    os.environ["MODEL_PATH"] = model_path  # read when the handler module is imported
    from serving import handler as function

    rows = []
    with open(os.devnull, "w") as devnull:
        sys.stdout = devnull  # the handler's JSON log lines are not the result
        for n in sorted({1, threads}):
            function.NUM_THREADS = n
            function.model.cache_clear()
            runner, info = function.model()
            for photo in photos:
                with open(photo, "rb") as f:
                    event = {"image": base64.b64encode(f.read()).decode()}
                timed = summary(rounds(function, runner, info, event, runs))
                rows.append({"photo_path": photo, "threads": n, **timed, "log_bytes": log_bytes(function, event)})
    sys.stdout = sys.__stdout__
    print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
