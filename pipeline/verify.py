"""Stage verify: Keras and every TFLite variant on the real test split - accuracy, parity, gates."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import cli, dataset, files, params, paths
from serving.images import scale, softmax
from serving.labels import LABELS
from serving.runtime import TFLiteModel


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict:
    return {
        label: round(float(np.mean(predicted[labels == i] == i)), 4)
        for i, label in enumerate(LABELS)
        if np.any(labels == i)
    }


def compare(keras_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict:
    diff = np.abs(probs - keras_probs)
    return {
        "accuracy": round(float(np.mean(probs.argmax(1) == labels)), 4),
        "agreement": round(float(np.mean(probs.argmax(1) == keras_probs.argmax(1))), 4),
        "max_abs_prob_diff": float(f"{diff.max():.3g}"),
        "mean_abs_prob_diff": float(f"{diff.mean():.3g}"),
    }


def gate_failures(metrics: dict, v: params.Verify) -> list[str]:
    failures = []
    keras_accuracy = metrics["keras"]["accuracy"]
    for variant, m in metrics.items():
        if variant == "keras":
            continue
        if m["agreement"] < v.min_agreement:
            failures.append(f"{variant}: top-1 agreement {m['agreement']} < verify.min_agreement {v.min_agreement}")
        drop = round(keras_accuracy - m["accuracy"], 4)
        if drop > v.max_accuracy_drop:
            failures.append(
                f"{variant}: accuracy {m['accuracy']} is {drop} below Keras ({keras_accuracy}), "
                f"more than verify.max_accuracy_drop {v.max_accuracy_drop}"
            )
    return failures


def verify(p: params.Params) -> dict:
    for path in (paths.MODEL, paths.MODEL_INFO):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the train stage first (dvc repro train)")
    model = keras.models.load_model(paths.MODEL, compile=False)
    info = json.loads(Path(paths.MODEL_INFO).read_text())
    size = model.input_shape[1]
    images, labels, image_paths = dataset.load_split(dataset.read_manifest(), "test", size)
    x = scale(images)

    keras_logits = model.predict(x, batch_size=32, verbose=0)
    all_probs = {"keras": softmax(keras_logits)}
    for variant in p.convert.variants:
        tflite_path = Path(paths.TFLITE_DIR) / f"{variant}.tflite"
        if not tflite_path.exists():
            raise cli.UserError(f"{tflite_path} not found: run the convert stage first (dvc repro convert)")
        runner = TFLiteModel(tflite_path, num_threads=p.verify.num_threads)
        one_by_one = tqdm(range(len(x)), desc=f"verify {variant}", unit="img", disable=None)
        logits = np.concatenate([runner.logits(x[i : i + 1]) for i in one_by_one])
        all_probs[variant] = softmax(logits)

    keras_accuracy = round(float(np.mean(all_probs["keras"].argmax(1) == labels)), 4)
    metrics = {
        "keras": {
            "accuracy": keras_accuracy,
            "weights": info["weights"],
            "size_mb": round(Path(paths.MODEL).stat().st_size / 2**20, 2),
            "logit_spread": round(float(keras_logits.std(axis=1).mean()), 4),
        }
    }
    for variant in p.convert.variants:
        size_mb = round((Path(paths.TFLITE_DIR) / f"{variant}.tflite").stat().st_size / 2**20, 2)
        metrics[variant] = {"size_mb": size_mb, **compare(all_probs["keras"], all_probs[variant], labels)}
    metrics["test_images"] = len(labels)

    per_class = {name: per_class_accuracy(probs.argmax(1), labels) for name, probs in all_probs.items()}
    rows = [
        pd.DataFrame(
            {
                "path": image_paths,
                "label": [LABELS[i] for i in labels],
                "model": name,
                "predicted": [LABELS[i] for i in probs.argmax(1)],
                **{f"p_{label}": probs[:, i] for i, label in enumerate(LABELS)},
            }
        )
        for name, probs in all_probs.items()
    ]
    files.write_json(paths.VERIFY_METRICS, metrics)
    files.write_json(paths.PER_CLASS, per_class)
    with files.atomic_path(paths.PREDICTIONS) as tmp:
        pd.concat(rows).to_csv(tmp, index=False, float_format="%.6f")
    return metrics


def main() -> None:
    p = params.load()
    metrics = verify(p)
    print(f"{'model':<14}{'size MiB':>9}{'accuracy':>10}{'agreement':>11}{'max |dp|':>10}")
    for name, m in metrics.items():
        if isinstance(m, dict):
            print(
                f"{name:<14}{m['size_mb']:>9}{m['accuracy']:>10}{m.get('agreement', ''):>11}"
                f"{m.get('max_abs_prob_diff', ''):>10}"
            )
    if metrics["keras"]["logit_spread"] < 0.01:
        print(
            "warning: the Keras model's logits barely differ between classes (untrained?): "
            "agreement between variants proves little"
        )
    failures = gate_failures({k: v for k, v in metrics.items() if isinstance(v, dict)}, p.verify)
    if failures:
        raise cli.UserError("verification failed:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    cli.run(main)
