"""LiteRT float32 vs full int8 of the pipeline's Xception at several input sizes and thread counts.

    python benchmarks/threads_and_sizes.py [--sizes 96 150 224 299] [--threads 1 2]

Untrained weights are fine here: speed depends on the graph, not the values. Writes
benchmarks/results/threads_and_sizes.csv and .png; prints the table with the int8/float32 ratio.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline.files import output_to  # noqa: E402
from pipeline.model import build_model  # noqa: E402
from serving.runtime import TFLiteModel  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def convert(model, int8: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        size = model.input_shape[1]
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)] for _ in range(20)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with output_to(OUT / "convert.log"):  # the converter prints hundreds of lines
        return converter.convert()


def median_ms(path: str, threads: int, runs: int) -> float:
    model = TFLiteModel(path, num_threads=threads)
    x = np.random.default_rng(1).uniform(-1, 1, (1, model.input_size, model.input_size, 3)).astype(np.float32)
    for _ in range(5):
        model.logits(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.logits(x)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 150, 224, 299])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--activation", default="leaky_relu", choices=["relu", "leaky_relu"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model = build_model(10, size, None, args.activation, 0, 0.0, False)
            paths = {}
            for variant, int8 in (("float32", False), ("full_int8", True)):
                paths[variant] = f"{tmp}/{variant}_{size}.tflite"
                Path(paths[variant]).write_bytes(convert(model, int8))
            for threads in args.threads:
                ms = {v: median_ms(p, threads, args.runs) for v, p in paths.items()}
                rows.append(
                    {
                        "size": size,
                        "threads": threads,
                        "float32_ms": round(ms["float32"], 2),
                        "full_int8_ms": round(ms["full_int8"], 2),
                        "int8_over_float32": round(ms["full_int8"] / ms["float32"], 3),
                    }
                )
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "threads_and_sizes.csv", index=False)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (threads), group in table.groupby("threads"):
        ax.plot(group["size"], group["float32_ms"], "o-", label=f"float32, {threads} thr")
        ax.plot(group["size"], group["full_int8_ms"], "s--", label=f"full int8, {threads} thr")
    ax.set(xlabel="input size (px)", ylabel="ms per image (median)", title=f"LiteRT Xception ({args.activation})")
    ax.legend()
    fig.savefig(OUT / "threads_and_sizes.png", dpi=110, bbox_inches="tight")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
