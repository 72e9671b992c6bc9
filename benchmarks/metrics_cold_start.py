"""What the metrics library costs the function's cold start: the real handler in fresh processes
(import, model load, first answer to a real photo), with its EMF metrics (Powertools) and without
them (serving.metrics replaced by a stand-in that passes the log line through, as the handler was
before), alternating, side by side in one run.

    python benchmarks/metrics_cold_start.py MODEL PHOTO [--runs 30] [--out benchmarks/results/metrics_cold_start.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# In the fresh process: time from its first line to the handler's answer, split into the metrics
# module's import (Powertools' own modules included) and the rest.
PROBE = """
import time
started = time.perf_counter()
import base64, sys, types
if sys.argv[1] == "without":
    stub = types.ModuleType("serving.metrics")
    stub.document = lambda log, context, variant: log
    sys.modules["serving.metrics"] = stub
else:
    import serving.metrics
metrics_imported = time.perf_counter()
from serving import handler
answer = handler.lambda_handler({"image": base64.b64encode(open(sys.argv[2], "rb").read()).decode()})
done = time.perf_counter()
assert "top" in answer, answer
print("RESULT", metrics_imported - started, done - started, file=sys.stderr)
"""


def one(mode: str, model: Path, photo: Path) -> dict:
    env = {**os.environ, "MODEL_PATH": str(model), "PYTHONPATH": f"{ROOT}:{ROOT / 'lambda'}"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(photo)], env=env, capture_output=True, text=True, check=True
    )
    process_s = time.perf_counter() - started
    line = next(x for x in done.stderr.splitlines() if x.startswith("RESULT"))
    metrics_s, first_answer_s = (float(v) for v in line.split()[1:])
    lines = done.stdout.strip().splitlines()
    return {"process_s": process_s, "first_answer_s": first_answer_s, "metrics_import_s": metrics_s, "lines": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--runs", type=int, default=30)  # as in the recorded run (results/)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/metrics_cold_start.json")
    args = parser.parse_args()
    runs = {"with": [], "without": []}
    for _ in range(args.runs):  # alternating: a machine that slows down meanwhile slows both
        for mode in runs:
            runs[mode].append(one(mode, args.model, args.photo))
    assert all("_aws" in json.loads(r["lines"][-1]) for r in runs["with"])  # it did write EMF
    assert all("_aws" not in json.loads(r["lines"][-1]) for r in runs["without"])
    result = {"runs": args.runs, "model": str(args.model), "model_bytes": args.model.stat().st_size}
    result["python"] = sys.version.split()[0]
    for mode, found in runs.items():
        for key in ("process_s", "first_answer_s", "metrics_import_s"):
            result[f"{mode}_{key}_median"] = round(statistics.median(r[key] for r in found), 4)
    # Each pair ran back to back: the median of the pairs' differences is steadier than the medians' difference.
    for key in ("process_s", "first_answer_s"):
        pairs = [w[key] - o[key] for w, o in zip(runs["with"], runs["without"], strict=True)]
        result[f"added_{key}_median_of_pairs"] = round(statistics.median(pairs), 4)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
