"""The original service's model file, end to end: a nested tf.keras 2 .h5 at 299 px through `dvc repro`.

    python benchmarks/load_nested_h5.py /tmp/load-nested [max_per_class] [--resume]

Builds, with tf_keras, the model the way the original service's notebook did (Xception base on its own,
include_top=False, 299x299x3, frozen; called as a layer on a new Input with training=False; then
GlobalAveragePooling2D, Dense(100, relu), Dropout(0.2), Dense(10) logits) and saves it as .h5. ImageNet
weights cannot be downloaded here, so the base has weights=None with its BatchNorm statistics calibrated
on training photos, and the head is trained on the base's features: a weak but real classifier whose
logits differ from photo to photo. Then copies this project's stage code to the given folder (never
this project), sets train.mode: load, and runs `dvc repro` (load -> convert -> verify -> bench ->
recommend -> report) with the float variants, full_int8 and full_int8_leaky (the residual ReLUs swapped
for LeakyReLU). Saves the parity, accuracy, partitions and p50 numbers to
benchmarks/results/load_nested_h5.json. Takes ~15-30 min on 2 cores.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from serving.images import load_image, scale

ROOT = Path(__file__).resolve().parents[1]
SIZE = 299
VARIANTS = ["float32", "float16", "dynamic_int8", "full_int8", "full_int8_leaky"]
DEFAULT_GATES = {"min_agreement": 0.95, "max_accuracy_drop": 0.02}  # params.yaml's verify gates


def make_project(dest: Path, max_per_class: int, h5: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for code in ("pipeline", "lambda"):
        shutil.copytree(ROOT / code, dest / code, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dockerignore", "artifacts/tune/tune.csv"):  # tune.csv: report's dep, header only
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    local_dir = (ROOT / params["data"]["local_dir"]).resolve()  # the project's own data set, seen from elsewhere
    params["data"].update(local_dir=str(local_dir), max_per_class=max_per_class)
    params["data"]["expected_images"] = 0
    params["train"].update(mode="load", load_from=str(h5), min_load_accuracy=0.0)
    # onnx_float32 too: ONNX Runtime beside LiteRT, and dvc.yaml's convert stage declares artifacts/onnx.
    params["convert"]["variants"] = [*VARIANTS, "onnx_float32"]
    # The gates are checked below against params.yaml's values; loose here so bench measures every variant.
    params["verify"].update(min_agreement=0.0, max_accuracy_drop=1.0)
    params["recommend"].update(min_agreement=0.0, max_accuracy_drop=1.0)
    params["bench"].update(keras=False, warm_runs=30, cold_start_repeats=2)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def run(cmd: list[str], cwd: Path) -> None:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # dvc from this environment
    env = {**os.environ, "PATH": path, "PYTHONPATH": f"{cwd}:{cwd / 'lambda'}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def labels_of(manifest: pd.DataFrame) -> list[str]:
    """The classes in the model's output order: the data stage's folder names, sorted (data.classes is [])."""
    return sorted(manifest["label"].unique())


def photos(manifest: pd.DataFrame, split: str) -> tuple[list[str], np.ndarray]:
    rows = manifest[manifest["split"] == split]
    return rows["path"].tolist(), np.array([labels_of(manifest).index(label) for label in rows["label"]])


def images(paths: list[str]) -> np.ndarray:
    return np.stack([scale(load_image(p, SIZE)) for p in paths])


def build_nested_h5(dest: Path, manifest: pd.DataFrame) -> "object":
    import tf_keras as k

    k.utils.set_random_seed(0)
    train_paths, train_labels = photos(manifest, "train")
    x_train = images(train_paths)
    base = k.applications.Xception(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    for layer in base.layers:  # one pass in training mode with momentum 0: moving statistics = these photos'
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = 0.0
    base(x_train[np.random.default_rng(0).permutation(len(x_train))[:32]], training=True)
    base.trainable = False

    inputs = k.Input((SIZE, SIZE, 3))
    x = base(inputs, training=False)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dense(100, activation="relu")(x)
    x = k.layers.Dropout(0.2)(x)
    model = k.Model(inputs, k.layers.Dense(10)(x))

    # Train the head on the base's pooled features (the base runs once per photo), then copy it over.
    features = k.Model(inputs, model.layers[2].output).predict(x_train, batch_size=16, verbose=0)
    mean, std = features.mean(0), features.std(0) + 1e-6
    head = k.Sequential(
        [k.Input((features.shape[1],)), k.layers.Dense(100, "relu"), k.layers.Dropout(0.2), k.layers.Dense(10)]
    )
    head.compile(k.optimizers.Adam(1e-3), k.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    head.fit((features - mean) / std, train_labels, epochs=60, batch_size=32, verbose=0)
    # Fold the feature standardization into the first Dense layer: x' = (x - mean) / std.
    kernel, bias = head.layers[0].get_weights()
    model.layers[3].set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])
    model.layers[5].set_weights(head.layers[2].get_weights())
    model.save(dest)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", nargs="?", type=Path, default=Path("/tmp/load-nested"), help="a folder to make")
    parser.add_argument("max_per_class", nargs="?", type=int, default=20, help="training photos a class")
    parser.add_argument("--resume", action="store_true", help="dvc repro goes on from the last stage that finished")
    args = parser.parse_args()
    project, max_per_class, resume = args.project, args.max_per_class, args.resume
    h5 = project.parent / f"{project.name}-nested_xception_299.h5"  # kept across reruns
    if not resume:
        make_project(project, max_per_class, h5)
        run([sys.executable, "-m", "pipeline.data"], project)
    manifest = pd.read_csv(project / "data/manifest.csv")
    started = time.time()
    if h5.exists():
        import tf_keras

        tf_keras_model = tf_keras.models.load_model(h5, compile=False)
    else:
        tf_keras_model = build_nested_h5(h5, manifest)
    build_s = time.time() - started
    test_paths, test_labels = photos(manifest, "test")
    x_test = images(test_paths)
    expected = tf_keras_model.predict(x_test, batch_size=16, verbose=0)

    started = time.time()
    if not resume:
        run(["dvc", "init", "--no-scm", "-q", "-f"], project)
    run(["dvc", "repro"], project)
    repro_s = time.time() - started

    import keras

    loaded = keras.models.load_model(project / "artifacts/model/model.keras", compile=False)
    logits = loaded.predict(x_test, batch_size=16, verbose=0)
    predictions = pd.read_csv(project / "artifacts/verify/predictions.csv")
    verify = json.loads((project / "artifacts/metrics/verify.json").read_text())
    bench = pd.read_csv(project / "artifacts/bench/results.csv").set_index("runtime")
    info = json.loads((project / "artifacts/model/info.json").read_text())
    environment = json.loads((project / "artifacts/bench/environment.json").read_text())

    by_path = {name: rows.set_index("path").loc[test_paths] for name, rows in predictions.groupby("model")}
    tf_keras_class = expected.argmax(1)
    result = {
        "model": "nested tf.keras 2 .h5: Xception (weights=None, BatchNorm calibrated) called as a layer "
        "(training=False) at 299 px, GAP, Dense(100, relu), Dropout(0.2), Dense(10); head trained on the features",
        "loaded": {k: info[k] for k in ("format", "nested_models", "input_size", "parameters", "val_accuracy")},
        "test_images": len(test_paths),
        "tf_keras_test_accuracy": round(float(np.mean(tf_keras_class == test_labels)), 4),
        "keras3_vs_tf_keras_max_abs_logit_diff": float(f"{np.abs(logits - expected).max():.3g}"),
        "logit_spread": round(float(expected.std(axis=1).mean()), 4),
        "variants": {},
        "machine": environment["machine"],
        "build_seconds": round(build_s),
        "dvc_repro_seconds": round(repro_s),
    }
    for variant in VARIANTS:
        predicted = np.array([labels_of(manifest).index(label) for label in by_path[variant]["predicted"]])
        m, row = verify[variant], bench.loc[variant]
        drop = verify["keras"]["accuracy"] - m["accuracy"]
        result["variants"][variant] = {
            "accuracy": m["accuracy"],
            "agreement_with_keras": m["agreement"],
            "agreement_with_tf_keras": round(float(np.mean(predicted == tf_keras_class)), 4),
            "passes_default_gates": bool(
                m["agreement"] >= DEFAULT_GATES["min_agreement"] and drop <= DEFAULT_GATES["max_accuracy_drop"]
            ),
            "p50_ms": float(row["p50_ms"]),
            "partitions": int(row["partitions"]),
            "ops_outside_delegate": int(row["ops_outside_delegate"]),
        }
    result["keras_accuracy"] = verify["keras"]["accuracy"]
    out = ROOT / "benchmarks/results/load_nested_h5.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
