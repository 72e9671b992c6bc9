"""The train stage's Keras work: train the Xception classifier (from scratch or ImageNet) or load an
existing model, with the inputs pipeline/sources.py found and checked."""

import itertools
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import cli, dataset, params, sources
from pipeline.model import build_model, load_existing
from pipeline.sources import weights_kind
from serving.images import scale


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the epoch with the best validation accuracy; log each epoch."""

    def __init__(self):
        super().__init__()
        self.best_accuracy, self.best_epoch, self.best_weights, self.rows = -1.0, 0, None, []
        self.size = 0  # the training image size of the current epochs
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": epoch + 1,
            "size": self.size,
            **{k: float(v) for k, v in logs.items()},
            "learning_rate": float(lr.numpy() if hasattr(lr, "numpy") else lr),
            "seconds": round(time.time() - self.started, 1),
        }
        self.rows.append(row)
        if logs["val_accuracy"] > self.best_accuracy:
            self.best_accuracy, self.best_epoch = logs["val_accuracy"], epoch + 1
            self.best_weights = self.model.get_weights()


def augmented(
    images: np.ndarray, labels: np.ndarray, classes: int, p: params.Recipe, size: "int | None", augment: bool, seed: int
):
    """Batches for fit() at one image size; the augmentation (a random crop of min_crop_area..100% of
    the image, aspect 3:4..4:3, resized, and a random flip) runs inside tf.data, never Python per image."""
    one_hot = np.eye(classes, dtype=np.float32)[labels]
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])

    def prepare(x, y):
        if augment:
            begin, crop, _ = tf.image.sample_distorted_bounding_box(
                tf.shape(x), whole, area_range=(p.min_crop_area, 1.0), aspect_ratio_range=(3 / 4, 4 / 3)
            )
            x = tf.image.random_flip_left_right(tf.slice(x, begin, crop))
        return tf.image.resize(x, (size, size), antialias=True), y

    ds = tf.data.Dataset.from_tensor_slices((images, one_hot)).shuffle(len(images), seed=seed)
    if augment or (size and images.shape[1] != size):  # size None: cached features, as they are
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(p.batch_size).prefetch(tf.data.AUTOTUNE)


def decode_size(p: params.Recipe) -> int:
    """Train images are decoded once, a little larger than input_size when crops will be taken."""
    return round(p.input_size * 1.15) if p.augment else p.input_size


def size_schedule(p: params.Recipe) -> list[int]:
    """The training image size of each epoch: train_sizes in equal shares, then input_size."""
    sizes = [*p.train_sizes, p.input_size]
    return [sizes[epoch * len(sizes) // p.epochs] for epoch in range(p.epochs)]


def compile_model(model, p: params.Recipe, steps_per_epoch: int):
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if p.warmup_epochs else p.learning_rate,
        warmup_target=p.learning_rate if p.warmup_epochs else None,
        warmup_steps=p.warmup_epochs * steps_per_epoch,
        decay_steps=max(1, (p.epochs - p.warmup_epochs) * steps_per_epoch),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=p.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=p.label_smoothing),
        metrics=["accuracy"],
    )
    # The optimizer's variables made here, not in the first train step: variables created inside a tf.function
    # make TensorFlow trace it again (measured: docs/toolchain.md, Measurements behind the code's rules).
    model.optimizer.build(model.trainable_variables)


def fit(model, train, val, p: params.Recipe, seed: int, keep: KeepBest, features: bool = False):
    """Train on (inputs, labels) pairs; features=True means inputs are cached base features."""
    (x_train, y_train), (x_val, y_val) = train, val
    classes = model.output_shape[-1]
    if not features:
        x_train, x_val = scale(x_train), scale(x_val)
    schedule = [p.input_size] * p.epochs if features else size_schedule(p)
    compile_model(model, p, -(-len(y_train) // p.batch_size))
    for size, epochs in itertools.groupby(range(p.epochs), key=lambda epoch: schedule[epoch]):
        epochs = list(epochs)
        if size != p.input_size:
            print(f"epochs {epochs[0] + 1}-{epochs[-1] + 1} at {size} px")
        keep.size = size
        # A fresh train function per size: Keras' own would retrace with height and width unknown
        # (reduce_retracing); this keeps every graph's shapes static.
        model.make_train_function(force=True)
        model.fit(
            augmented(x_train, y_train, classes, p, None if features else size, p.augment and not features, seed),
            validation_data=(x_val, np.eye(classes)[y_val]),
            initial_epoch=epochs[0],
            epochs=epochs[-1] + 1,
            callbacks=[keep],
            shuffle=False,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    model.set_weights(keep.best_weights)


def native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 itself (AVX512-BF16 or AMX). Without either TensorFlow emulates it,
    several times slower than float32 (benchmarks/results/mixed_precision.txt)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def precision(wanted: bool) -> str:
    """The Keras policy training runs under: train.mixed_precision where the CPU has bfloat16, else float32."""
    if not wanted:
        return "float32"
    if native_bfloat16():
        return "mixed_bfloat16"
    print("train.mixed_precision: no AVX512-BF16 or AMX on this CPU (bfloat16 would be emulated, ~10x slower): float32")
    return "float32"


def train(p: params.Params, weights: "str | None") -> tuple[keras.Model, dict, pd.DataFrame]:
    """weights: a weights file sources.resolve_weights found (None: from scratch)."""
    t, r = p.train, p.train.chosen
    keras.utils.set_random_seed(t.seed)
    manifest, labels = dataset.read_manifest(), dataset.read_labels()
    x_train, y_train, _ = dataset.load_split(manifest, "train", decode_size(r), labels)
    x_val, y_val, _ = dataset.load_split(manifest, "validation", r.input_size, labels)

    build = dict(
        classes=len(labels),
        input_size=r.input_size,
        weights=weights,
        residual_activation=t.residual_activation,
        dense_size=r.dense_size,
        dropout=r.dropout,
        freeze_base=r.freeze_base,
        bn_momentum=r.bn_momentum,
    )
    keep = KeepBest()
    policy = "float32"
    if r.freeze_base and not r.augment:
        # The base never changes: run it once per image, then train only the head on its features.
        model = build_model(**build)
        base_features = keras.Model(model.input, model.get_layer("pool").output)
        print("computing base features once (frozen base, no augmentation)")
        f_train = base_features.predict(scale(x_train), batch_size=32, verbose=2)
        f_val = base_features.predict(scale(x_val), batch_size=32, verbose=2)
        head = model.get_layer("head")
        fit(head, (f_train, y_train), (f_val, y_val), r, t.seed, keep, features=True)
    else:
        policy = precision(t.mixed_precision)
        keras.mixed_precision.set_global_policy(policy)
        trained = build_model(**{**build, "input_size": None if r.train_sizes else r.input_size})
        fit(trained, (x_train, y_train), (x_val, y_val), r, t.seed, keep)
        # Convert and serve in float32: same architecture, same weights, float32 policy.
        keras.mixed_precision.set_global_policy("float32")
        model = build_model(**{**build, "weights": None})
        model.set_weights(trained.get_weights())

    info = {
        "source": "train",
        "weights": weights_kind(r.weights),
        "recipe": t.recipe,
        "input_size": r.input_size,
        "labels": labels,  # the model's output order: convert, verify, report and the function read them here
        "train_sizes": r.train_sizes,
        "residual_activation": t.residual_activation,
        "precision": policy,
        "epochs": len(keep.rows),
        "best_epoch": keep.best_epoch,
        "val_accuracy": round(keep.best_accuracy, 4),
        "train_seconds": round(time.time() - keep.started, 1),
        "train_images": len(y_train),
        "parameters": model.count_params(),
    }
    return model, info, pd.DataFrame(keep.rows)


def load(p: params.Params, source: Path, kind: str) -> tuple[keras.Model, dict, pd.DataFrame]:
    """An existing model (.keras, or a Keras 2 / tf.keras .h5 as the original service saved it), as an
    equivalent Keras 3 model, with its labels (sources.find_labels: beside the file, train.labels, or the
    data set's), one per output; its validation accuracy checks they are the data set's, in its order."""
    labels, where = sources.find_labels(p.train, source)
    model, loaded = load_existing(source, kind)
    outputs = model.output_shape[-1]
    if outputs != len(labels):
        raise cli.UserError(
            f"{source}: outputs {outputs} classes, but the labels ({where}) are {len(labels)}: {labels}; "
            f"give its {outputs} labels in order in train.labels (or {sources.labels_file(source)})"
        )
    size = model.input_shape[1]
    x_val, y_val, _ = dataset.load_split(dataset.read_manifest(), "validation", size, labels)
    logits = model.predict(scale(x_val), batch_size=32, verbose=0)
    accuracy = float(np.mean(logits.argmax(1) == y_val))
    if accuracy < p.train.min_load_accuracy:
        raise cli.UserError(
            f"{source} reaches {accuracy:.3f} validation accuracy, below train.min_load_accuracy "
            f"{p.train.min_load_accuracy}: wrong model, or classes in another order than {labels} ({where})"
        )
    info = {
        "source": "load",
        "loaded_from": str(p.train.load_from),
        "weights": "loaded",
        "format": loaded["format"],
        "nested_models": loaded["nested_models"],
        "input_size": size,
        "labels": labels,
        "labels_from": where,
        "val_accuracy": round(accuracy, 4),
        "parameters": model.count_params(),
    }
    print(
        f"loaded {loaded['format']} model: {size} px input, {info['parameters']:,} parameters"
        + (f", nested {', '.join(loaded['nested_models'])}" if loaded["nested_models"] else "")
    )
    return model, info, pd.DataFrame(columns=["epoch", "accuracy", "loss", "val_accuracy", "val_loss"])
