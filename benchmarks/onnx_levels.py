"""What ONNX Runtime's graph optimization level does to the int8 model's speed, here and now.

    python benchmarks/onnx_levels.py [--runs 200] [--threads 2]

Times artifacts/onnx/onnx_int8.onnx (batch 1, the first test photo) at each level and with the
thread pool's spinning on and off; saves benchmarks/results/onnx_levels.csv.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from pipeline import variants
from serving.images import preprocess

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {
    "DISABLE_ALL": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def p50_ms(model: Path, level, threads: int, spinning: bool, x_of, runs: int) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name, size = session.get_inputs()[0].name, session.get_inputs()[0].shape[1]
    x = x_of(size)
    session.run(None, {name: x})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    photo = pd.read_csv(ROOT / "data/manifest.csv").query("split == 'test'")["path"].iloc[0]
    model = ROOT / variants.model_path("onnx_int8")
    rows = [
        {
            "level": name,
            "spinning": spinning,
            "p50_ms": p50_ms(model, level, args.threads, spinning, lambda s: preprocess(photo, s), args.runs),
        }
        for name, level in LEVELS.items()
        for spinning in (True, False)
    ]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    table.to_csv(ROOT / "benchmarks/results/onnx_levels.csv", index=False)


if __name__ == "__main__":
    main()
