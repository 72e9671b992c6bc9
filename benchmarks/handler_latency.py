"""The Lambda handler's cold start and warm latency for each variant (LiteRT or ONNX Runtime), under the real
runtime interface emulator (pipeline/serve.py): a fresh emulator + runtime per variant.

    python benchmarks/handler_latency.py [--runs 50] [--variants float32 full_int8]

Cold start = from starting the emulator process to the first answer (interpreter start, imports,
model load, image decode, first prediction). Warm = the following requests, one at a time.
Saves the table to benchmarks/results/handler_latency.csv.
"""

import argparse
import base64
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from pipeline import serve, variants

ROOT = Path(__file__).resolve().parents[1]

INVOKE = serve.INVOKE_PATH


def measure(model: Path, photo: bytes, runs: int, threads: int) -> dict:
    event = {"image": base64.b64encode(photo).decode()}
    started = time.perf_counter()
    server, base = serve.launch(model, threads, poll_s=0.01)
    try:
        answer = requests.post(base + INVOKE, json=event, timeout=60).json()
        cold = time.perf_counter() - started
        warm, inference = [], []
        for _ in range(runs):
            t = time.perf_counter()
            answer = requests.post(base + INVOKE, json=event, timeout=60).json()
            warm.append((time.perf_counter() - t) * 1000)
            inference.append(answer["inference_ms"])
    finally:
        server.terminate()
        server.wait()
    return {
        "variant": model.stem,
        "cold_start_s": round(cold, 3),
        "warm_p50_ms": round(np.median(warm), 2),
        "warm_p99_ms": round(np.percentile(warm, 99), 2),
        "inference_p50_ms": round(np.median(inference), 2),
        "top": answer["top"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["float32", "full_int8", "onnx_float32", "onnx_int8"])
    parser.add_argument("--photo", type=Path, default=None, help="default: the first test photo in the manifest")
    args = parser.parse_args()
    photo = args.photo or Path(pd.read_csv(ROOT / "data/manifest.csv").query("split == 'test'")["path"].iloc[0])
    rows = [measure(ROOT / variants.model_path(v), photo.read_bytes(), args.runs, args.threads) for v in args.variants]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    table.to_csv(ROOT / "benchmarks/results/handler_latency.csv", index=False)


if __name__ == "__main__":
    main()
