"""Train the default recipe in params.yaml through the real train stage and print what it cost.

    python benchmarks/train_default.py

Runs `python -m pipeline.train` (data stage first if needed) in this project, its log streaming
through, then the Keras test accuracy; prints wall time, images/s, peak memory and validation/test
accuracy, and saves them to benchmarks/results/train_default.json. Overwrites artifacts/model like
`dvc repro train` would.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEST_ACCURACY = """
import keras, numpy as np
from pipeline import dataset
from serving.images import scale
model = keras.models.load_model("artifacts/model/model.keras", compile=False)
x, y, _ = dataset.load_split(dataset.read_manifest(), "test", model.input_shape[1], dataset.model_labels())
print(float(np.mean(model.predict(scale(x), verbose=0).argmax(1) == y)))
"""

# The input pipeline alone, as fit() gets it: must be far faster than training consumes it.
INPUT_SPEED = """
import time
from pipeline import dataset, fit, params
from serving.images import scale
r = params.load().train.chosen
labels = dataset.read_labels()
x, y, _ = dataset.load_split(dataset.read_manifest(), "train", train.decode_size(r), labels)
started = time.perf_counter()
batches = fit.augmented(scale(x), y, len(labels), r, r.input_size, r.augment, seed=0)
images = sum(len(labels) for _, labels in batches)
print(images / (time.perf_counter() - started))
"""


def cpu_name() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def main() -> None:
    if not (ROOT / "data/manifest.csv").exists():
        subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=ROOT, check=True)
    started = time.perf_counter()
    train = subprocess.run([sys.executable, "-m", "pipeline.train"], cwd=ROOT)  # its log streams through
    wall = time.perf_counter() - started
    if train.returncode != 0:
        sys.exit(f"the train stage failed ({train.returncode})")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the only child so far: the train stage
    info = json.loads((ROOT / "artifacts/model/info.json").read_text())
    test = subprocess.run([sys.executable, "-c", TEST_ACCURACY], cwd=ROOT, capture_output=True, text=True, check=True)
    feed = subprocess.run([sys.executable, "-c", INPUT_SPEED], cwd=ROOT, capture_output=True, text=True, check=True)
    images = info["train_images"] * info["epochs"]
    sizes = f" (first epochs at {info['train_sizes']})" if info["train_sizes"] else ""
    print(f"weights: {info['weights']} ({info['recipe']} recipe), input {info['input_size']} px{sizes}")
    print(f"{info['epochs']} epochs, best validation at epoch {info['best_epoch']}")
    print(
        f"train stage wall time: {wall / 60:.1f} min (fit: {info['train_seconds'] / 60:.1f} min), "
        f"{images / info['train_seconds']:.1f} images/s, peak memory {peak_kb / 2**20:.2f} GiB"
    )
    print(f"input pipeline alone (decoded arrays -> augmented batches): {float(feed.stdout.strip()):.0f} images/s")
    print(f"validation accuracy: {info['val_accuracy']:.4f}, test accuracy: {float(test.stdout.strip()):.4f}")
    result = {
        **{k: info[k] for k in ("weights", "recipe", "input_size", "train_sizes", "epochs", "best_epoch")},
        "stage_wall_min": round(wall / 60, 1),
        "fit_min": round(info["train_seconds"] / 60, 1),
        "images_per_s": round(images / info["train_seconds"], 1),
        "peak_memory_gib": round(peak_kb / 2**20, 2),
        "input_pipeline_images_per_s": round(float(feed.stdout.strip())),
        "val_accuracy": info["val_accuracy"],
        "test_accuracy": round(float(test.stdout.strip()), 4),
        "cpu": cpu_name(),
    }
    (ROOT / "benchmarks/results/train_default.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
