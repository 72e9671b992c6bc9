"""ONNX int8 without and with reduce_range, on the build machine and on Lambda's CPUs: the before/after of
convert.onnx_reduce_range (docs/targets.md).

    python benchmarks/targets_reduce_range.py PROJECT [--photos 150] [--out NAME] [--settings off,on]

PROJECT: a finished `dvc repro` (its onnx_float32.onnx, manifest, params and verify's predictions). Quantizes
onnx_int8 from its onnx_float32 both ways, calibrated on the photos convert uses; for each, the build
machine's accuracy and agreement with Keras on the whole test split, and the targets stage itself (run in a
scratch project beside it, on --photos test photos, both targets) for the agreement with the build machine
and with Keras on each target. Saves benchmarks/results/NAME.csv (default targets_reduce_range).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["photos", "accuracy", "agreement_keras", "build_accuracy", "build_agreement_keras", "agreement_build",
           "max_prob_diff", "seconds", "cpu_seconds", "verdict"]  # fmt: skip


def scratch_project(project: Path, folder: Path, model: Path, photos: int) -> Path:
    """What the targets stage reads, from PROJECT, with model as its only variant (onnx_int8)."""
    for name in ("data", "artifacts/model", "artifacts/verify", "artifacts/metrics"):
        shutil.copytree(project / name, folder / name, ignore=shutil.ignore_patterns("*.keras"))
    for code in ("pipeline", "lambda"):
        os.symlink(ROOT / code, folder / code)
    for table in ("data/manifest.csv", "artifacts/verify/predictions.csv"):  # photo paths relative to PROJECT
        rows = pd.read_csv(folder / table, dtype=str, keep_default_na=False)
        rows["path"] = [str((project / path).resolve()) for path in rows["path"]]
        rows.to_csv(folder / table, index=False)
    (folder / "artifacts/onnx").mkdir()
    shutil.copy(model, folder / "artifacts/onnx/onnx_int8.onnx")
    verify = json.loads((folder / "artifacts/metrics/verify.json").read_text())
    verify.pop("excluded", None)
    (folder / "artifacts/metrics/verify.json").write_text(json.dumps(verify))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["convert"]["variants"] = ["onnx_int8"]
    params["targets"] = yaml.safe_load((ROOT / "params.yaml").read_text())["targets"]
    params["targets"].update(int8_photos=photos, cache_dir=str(ROOT / ".cache/targets"))
    params["convert"].setdefault("onnx_reduce_range", True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--out", default="targets_reduce_range")
    parser.add_argument("--settings", default="off,on", help="reduce_range off, on or both (the targets stage's runs)")
    args = parser.parse_args()
    project = args.project.resolve()
    os.chdir(project)  # the pipeline's paths are relative to a project's root
    sys.path[:0] = [str(ROOT), str(ROOT / "lambda")]
    from pipeline import dataset, onnx_convert
    from serving.images import scale, softmax
    from serving.runtime import load_model

    representative_images = yaml.safe_load(Path("params.yaml").read_text())["convert"]["representative_images"]
    float_model = project / "artifacts/onnx/onnx_float32.onnx"
    size, labels_of = load_model(float_model).input_size, dataset.model_labels()
    images, _, _ = dataset.load_split(dataset.read_manifest(), "train", size, labels_of)
    representative = scale(images[np.random.default_rng(0).permutation(len(images))[:representative_images]])
    test, labels, paths = dataset.load_split(dataset.read_manifest(), "test", size, labels_of)
    predictions = dataset.read_labelled("artifacts/verify/predictions.csv")
    keras = predictions[predictions["model"] == "keras"].set_index("path").loc[paths]
    keras = keras[[f"p_{n}" for n in labels_of]].to_numpy().argmax(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reduce-range-") as tmp:
        for reduce_range in [{"off": False, "on": True}[s] for s in args.settings.split(",")]:
            model = Path(tmp) / f"onnx_int8_reduce_range_{reduce_range}.onnx"
            onnx_convert.quantize_int8(float_model, model, representative, Path(tmp) / "convert.log", reduce_range)
            runner = load_model(model, num_threads=1)
            predicted = softmax(np.concatenate([runner.logits(scale(test[i : i + 1])) for i in range(len(test))]))
            build = {"accuracy": round(float(np.mean(predicted.argmax(1) == labels)), 4),
                     "agreement_keras": round(float(np.mean(predicted.argmax(1) == keras)), 4)}  # fmt: skip
            rows.append({"reduce_range": reduce_range, "where": "build machine (all test photos)",
                         "photos": len(test), **build})  # fmt: skip
            folder = scratch_project(project, Path(tmp) / f"project-{reduce_range}", model, args.photos)
            started = time.monotonic()
            env = {**os.environ, "PYTHONPATH": f"{folder}:{folder / 'lambda'}"}
            subprocess.run([sys.executable, "-m", "pipeline.targets"], cwd=folder, env=env, check=True)
            print(f"reduce_range={reduce_range}: targets stage {time.monotonic() - started:.0f} s", flush=True)
            for _, row in pd.read_csv(folder / "artifacts/targets/targets.csv").iterrows():
                where = {"reduce_range": reduce_range, "where": f"{row['architecture']} ({row['cpu']})"}
                rows.append({**where, **row[COLUMNS].to_dict()})
    table = pd.DataFrame(rows)
    out = ROOT / "benchmarks/results" / f"{args.out}.csv"
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
