"""Stage verify: Keras and every variant (LiteRT and ONNX Runtime) on the real test split - accuracy,
parity, gates. Each variant runs through serving.runtime, the code the function serves with."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import cli, dataset, files, gates, params, paths, variants
from serving.images import scale, softmax
from serving.runtime import load_model


def per_class_accuracy(all_probs: dict, labels: np.ndarray, names: list) -> pd.DataFrame:
    """One row per class, one column per model: the table behind the report's per-class view."""
    present = [i for i in range(len(names)) if np.any(labels == i)]
    table = {"class": [names[i] for i in present]}
    for name, probs in all_probs.items():
        predicted = probs.argmax(1)
        table[name] = [round(float(np.mean(predicted[labels == i] == i)), 4) for i in present]
    return pd.DataFrame(table)


def compare(keras_probs: np.ndarray, probs: np.ndarray, labels: np.ndarray, confidence: float) -> dict:
    """A variant against Keras on the same photos: accuracy, agreement, probability differences, and the
    paired accuracy difference with its interval (gates.paired: what the accuracy gates judge)."""
    diff = np.abs(probs - keras_probs)
    right, keras_right = probs.argmax(1) == labels, keras_probs.argmax(1) == labels
    return {
        "accuracy": round(float(np.mean(right)), 4),
        "agreement": round(float(np.mean(probs.argmax(1) == keras_probs.argmax(1))), 4),
        "max_abs_prob_diff": float(f"{diff.max():.3g}"),
        "mean_abs_prob_diff": float(f"{diff.mean():.3g}"),
        **gates.paired(keras_right, right, len(labels), confidence),
    }


def verify(p: params.Params) -> dict:
    for path in (paths.MODEL, paths.MODEL_INFO):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the train stage first (dvc repro train)")
    model = keras.models.load_model(paths.MODEL, compile=False)
    info = json.loads(Path(paths.MODEL_INFO).read_text())
    size, names = model.input_shape[1], dataset.model_labels()
    images, labels, image_paths = dataset.load_split(dataset.read_manifest(), "test", size, names)
    x = scale(images)

    keras_logits = model.predict(x, batch_size=32, verbose=0)
    all_probs = {"keras": softmax(keras_logits)}
    for variant in p.convert.variants:
        model_path = variants.model_path(variant)
        if not model_path.exists():
            raise cli.UserError(f"{model_path} not found: run the convert stage first (dvc repro convert)")
        runner = load_model(model_path, num_threads=p.verify.num_threads)
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
        size_mb = round(variants.model_path(variant).stat().st_size / 2**20, 2)
        compared = compare(all_probs["keras"], all_probs[variant], labels, p.verify.confidence)
        metrics[variant] = {"size_mb": size_mb, **compared}
    metrics["test_images"] = len(labels)
    metrics["confidence"] = p.verify.confidence  # of every accuracy_diff_low/high
    if left_out := gates.excluded(metrics, p.convert.variants, p.verify):
        metrics["excluded"] = left_out  # bench, recommend and deploy go on without them (gates.not_excluded)

    rows = [
        pd.DataFrame(
            {
                "path": image_paths,
                "label": [names[i] for i in labels],
                "model": name,
                "predicted": [names[i] for i in probs.argmax(1)],
                **{f"p_{label}": probs[:, i] for i, label in enumerate(names)},
            }
        )
        for name, probs in all_probs.items()
    ]
    files.write_json(paths.VERIFY_METRICS, metrics)
    with files.atomic_path(paths.PER_CLASS) as tmp:
        per_class_accuracy(all_probs, labels, names).to_csv(tmp, index=False)
    with files.atomic_path(paths.PREDICTIONS) as tmp:
        pd.concat(rows).to_csv(tmp, index=False, float_format="%.6f")
    return metrics


def difference(m: dict) -> str:
    """A variant's accuracy difference from Keras in points, with its interval and discordant photos."""
    if "accuracy_diff" not in m:
        return ""
    low, high = m["accuracy_diff_low"], m["accuracy_diff_high"]
    return (
        f"{m['accuracy_diff'] * 100:+.2f} pt [{low * 100:+.2f}, {high * 100:+.2f}] "
        f"({m['keras_only']}/{m['variant_only']})"
    )


def main() -> None:
    p = params.load()
    metrics = verify(p)
    print(
        f"{'model':<14}{'size MiB':>9}{'accuracy':>10}{'agreement':>11}{'max |dp|':>10}"
        f"  vs Keras ({metrics['confidence']:.0%} interval; photos only Keras / only the variant gets right)"
    )
    for name in ("keras", *p.convert.variants):
        m = metrics[name]
        print(
            f"{name:<14}{m['size_mb']:>9}{m['accuracy']:>10}{m.get('agreement', ''):>11}"
            f"{m.get('max_abs_prob_diff', ''):>10}  {difference(m)}"
        )
    if metrics["keras"]["logit_spread"] < 0.01:
        print(
            "warning: the Keras model's logits barely differ between classes (untrained?): "
            "agreement between variants proves little"
        )
    gates.check(metrics, p.convert.variants, p.verify)
    for reasons in metrics.get("excluded", {}).values():
        print(f"excluded (verify.on_gate_failure: exclude): {reasons}")


if __name__ == "__main__":
    cli.run(main)
