"""Stage bench: size, warm latency, throughput, cold start and memory of every variant (LiteRT and
ONNX Runtime alike) and of Keras itself, measured in one run on the same photo. Measuring only:
the recommend stage decides and prices."""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from pipeline import cli, dataset, files, gates, params, paths, variants
from pipeline.footprint import environment_mb

ROOT = Path(__file__).resolve().parents[1]
# What artifacts/metrics/bench.json keeps per runtime (the headline numbers); every number is in results.csv.
HEADLINE = ("p50_ms", "cold_start_s", "peak_rss_mb", "size_mb")


def probe(runtime: str, model: Path, threads: int, image: str, warm_runs: int, batch: int) -> dict:
    """One fresh process; the wall time from spawn to exit is the cold start a user waits for."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambda'}:{ROOT}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [
        sys.executable,
        "-m",
        "pipeline.bench_probe",
        runtime,
        str(model),
        str(threads),
        image,
        str(warm_runs),
        str(batch),
    ]
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise cli.UserError(f"bench of {runtime} {model.name} failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_s": wall}


def measure(runtime: str, model: Path, p: params.Bench, threads: int, image: str) -> dict:
    # The machine's peak is measured seconds before this runtime's timings, not minutes apart: a
    # shared machine's load changes within minutes, and the fraction compares the two.
    peak = round(matmul_gflops(), 1)
    runs = [
        probe(runtime, model, threads, image, p.warm_runs if i == 0 else 0, p.batch_size)
        for i in range(p.cold_start_repeats)
    ]
    first = runs[0]
    cold = {
        key: round(statistics.median(r[key] for r in runs), 4)
        for key in ("import_s", "load_s", "first_prediction_s", "process_s")
    }
    cold["cold_start_s"] = round(cold["import_s"] + cold["load_s"] + cold["first_prediction_s"], 4)
    warm = {k: first[k] for k in ("p50_ms", "p90_ms", "p99_ms", "throughput_img_s", "peak_rss_mb")}
    return {**warm, **cold, "matmul_gflops": peak}


def photos(manifest: pd.DataFrame, phone_px: list, folder: Path) -> pd.DataFrame:
    """The photos the handler is timed on: the test photo of median file size (what the data set's
    photos are like), and the same photo re-encoded at a phone camera's size (JPEG quality 90)."""
    test = manifest[manifest["split"] == "test"]["path"].reset_index(drop=True)
    sizes = test.map(lambda path: Path(path).stat().st_size)
    dataset_photo = Path(test[(sizes - sizes.median()).abs().idxmin()])
    with Image.open(dataset_photo) as img:
        upright = ImageOps.exif_transpose(img).convert("RGB")
    width, height = phone_px if upright.width >= upright.height else phone_px[::-1]
    phone = folder / f"phone_{width}x{height}.jpg"
    upright.resize((width, height), Image.Resampling.LANCZOS).save(phone, quality=90)
    rows = []
    for name, path in (("dataset", dataset_photo), ("phone", phone)):
        with Image.open(path) as img:
            rows.append({"photo": name, "width": img.width, "height": img.height, "bytes": path.stat().st_size,
                         "path": str(path)})  # fmt: skip
    return pd.DataFrame(rows)


def handler_rows(row: str, model: Path, threads: int, runs: int, shots: pd.DataFrame) -> list[dict]:
    """The handler end to end in one fresh process (pipeline/bench_handler.py), per photo and thread count."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambda'}:{ROOT}"}
    cmd = [sys.executable, "-m", "pipeline.bench_handler", str(model), str(threads), str(runs), *shots["path"]]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise cli.UserError(f"bench of the handler with {model.name} failed:\n{result.stderr[-2000:]}")
    by_path = shots.set_index("path")
    rows = []
    for timed in json.loads(result.stdout.strip().splitlines()[-1]):
        shot = by_path.loc[timed.pop("photo_path")]
        rows.append({"runtime": row, **shot[["photo", "width", "height", "bytes"]].to_dict(), **timed})
    for r in rows:
        for stage in ("decode", "model", "rest"):
            r[f"{stage}_share"] = round(r[f"{stage}_ms"] / r["stages_ms"], 3)
    return rows


def count_macs(model) -> int:
    """Multiply-adds of one prediction, from the layers' shapes (convolutions and dense layers)."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, c_out = layer.output.shape
            c_in, (kh, kw) = layer.input.shape[-1], layer.kernel_size
            total += h * w * c_in * (kh * kw + c_out)
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            total += h * w * c_out * layer.input.shape[-1] * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 peak as numpy's BLAS reaches it, measured now, beside the models."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(p: params.Params) -> dict:
    import keras

    verify = json.loads(Path(paths.VERIFY_METRICS).read_text())
    threads = p.bench.num_threads or os.cpu_count()
    manifest = dataset.read_manifest()
    image = manifest[manifest["split"] == "test"]["path"].iloc[0]
    model = keras.models.load_model(paths.MODEL, compile=False)
    macs = count_macs(model)

    results, handler = {}, []
    folder = tempfile.TemporaryDirectory(prefix="bench-photos-")
    shots = photos(manifest, p.bench.phone_photo_px, Path(folder.name))
    if p.bench.keras:
        print("bench keras ...", flush=True)
        results["keras"] = {
            "size_mb": verify["keras"]["size_mb"],
            **measure("keras", Path(paths.MODEL), p.bench, threads, image),
        }
    from serving.runtime import TFLiteModel

    # Every variant, whichever its runtime, timed the same way: same photo, threads, probes.
    for variant in gates.not_excluded(p.convert.variants, verify):  # not those verify excluded
        runtime, path = variants.runtime(variant), variants.model_path(variant)
        print(f"bench {runtime} {variant} ...", flush=True)
        m = measure(runtime, path, p.bench, threads, image)
        one_thread = probe(runtime, path, 1, image, p.bench.warm_runs, 1)["p50_ms"]
        cold = probe("handler", path, threads, image, 0, 1)
        results[variant] = {
            "size_mb": verify[variant]["size_mb"],
            **m,
            "p50_1_thread_ms": one_thread,
            "handler_cold_start_s": round(cold["process_s"], 4),
        }
        handler += handler_rows(variant, path, threads, p.bench.handler_runs, shots)
        if runtime == "litert":  # XNNPACK partitions: LiteRT's own measure of kernel coverage
            coverage = TFLiteModel(path).delegate_coverage()
            coverage.pop("outside_ops")
            results[variant].update(coverage)
    for m in results.values():
        m["gflops"] = round(2 * macs / (m["p50_ms"] / 1000) / 1e9, 1)
        m["fraction_of_peak"] = round(m["gflops"] / m["matmul_gflops"], 3)
    peak = statistics.median(m["matmul_gflops"] for m in results.values())
    folder.cleanup()
    return {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads": threads,
            "python": platform.python_version(),
            "matmul_gflops": round(peak, 1),
        },
        "model": {"input_size": model.input_shape[1], "gmacs": round(macs / 1e9, 3)},
        "environment_mb": environment_mb(),
        "results": results,
        "handler": handler,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    p = params.load()
    for path in (paths.VERIFY_METRICS, paths.MODEL):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the verify stage first (dvc repro verify)")
    report = bench(p)
    results, handler = report.pop("results"), report.pop("handler")
    files.write_json(paths.BENCH_ENVIRONMENT, report)
    files.write_json(paths.BENCH_METRICS, {name: {k: m[k] for k in HEADLINE} for name, m in results.items()})
    table = pd.DataFrame([{"runtime": name, **m} for name, m in results.items()])
    with files.atomic_path(paths.BENCH_TABLE) as tmp:
        table.to_csv(tmp, index=False)
    with files.atomic_path(paths.BENCH_HANDLER) as tmp:
        pd.DataFrame(handler).to_csv(tmp, index=False)
    print(table.set_index("runtime")[["size_mb", "p50_ms", "p99_ms", "cold_start_s", "peak_rss_mb"]])


if __name__ == "__main__":
    cli.run(main)
