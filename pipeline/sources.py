"""Where the train stage's inputs come from - ImageNet or local weights, a model file or URL - found,
downloaded and checked before TensorFlow is imported, so a wrong path or URL fails in a second."""

import json
import zipfile
from pathlib import Path

import h5py

from pipeline import cli, dataset, files, params, paths


def resolve_weights(weights: str, imagenet_url: str, cache_dir: Path) -> "str | None":
    """none -> None; imagenet -> a cached download; anything else must be a local weights file."""
    if weights == "none":
        return None
    if weights == "imagenet":
        try:
            return str(files.download(imagenet_url, cache_dir / Path(imagenet_url).name))
        except cli.UserError as e:
            raise cli.UserError(
                f"ImageNet weights could not be downloaded ({e}). Set train.<recipe>.weights to a local "
                "Xception include_top=False weights file, or to none to train from scratch"
            ) from None
    if not Path(weights).is_file():
        raise cli.UserError(f"train.<recipe>.weights: no weights file at {weights!r} (or use none / imagenet)")
    return weights


def weights_kind(weights: str) -> str:
    return weights if weights in ("none", "imagenet") else f"file:{Path(weights).name}"


def h5_keras_version(path: "str | Path") -> "str | None":
    """The Keras version that saved a whole-model .h5 file; None when it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                return None
            version = f.attrs.get("keras_version", "2")
    except OSError:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def model_format(path: "str | Path") -> str:
    """keras (a Keras 3 .keras file), keras2_h5 (Keras 2 / tf.keras whole-model .h5), keras3_h5."""
    if Path(path).is_dir():
        raise cli.UserError(
            f"{path} is a folder (a TensorFlow SavedModel?): Keras 3 reads .keras and .h5 files only; "
            "save it as .h5 with tf_keras: tf_keras.models.load_model(folder).save('model.h5')"
        )
    if not str(path).endswith((".h5", ".hdf5")):
        if not zipfile.is_zipfile(path):  # a .keras file is a zip archive
            raise cli.UserError(f"cannot load a Keras model from {path}: not a .keras (zip) or .h5 file")
        return "keras"
    version = h5_keras_version(path)
    if version is None:
        raise cli.UserError(
            f"{path} holds no model (a weights-only .h5?): save the whole model (model.save) and load that"
        )
    return "keras3_h5" if version.startswith("3") else "keras2_h5"


def model_file(t: params.Train, download_dir: Path) -> tuple[Path, str]:
    """mode load: the model file (downloaded once from a URL) and its format."""
    source = t.load_from
    if not source:
        raise cli.UserError("train.mode: load needs train.load_from (a .keras/.h5 path or http(s) URL)")
    if source.startswith(("http://", "https://")):
        path = files.download(source, download_dir / "models" / Path(source).name)
    elif not Path(source).exists():
        raise cli.UserError(f"train.load_from: no model file at {source!r}")
    else:
        path = Path(source)
    return path, model_format(path)


def labels_file(model: "str | Path") -> Path:
    """Where a model file's labels may lie beside it: model.h5 -> model.json (as the function's
    model.json lies beside model.tflite)."""
    return Path(model).with_suffix(".json")


def find_labels(t: params.Train, model: Path) -> tuple[list[str], str]:
    """mode load: the model's labels in its output order, and where they came from: a JSON file beside
    the model ({"labels": [...]}; another JSON there, such as Keras' architecture file, is not read for
    labels), else train.labels, else the data set's classes (data/labels.json)."""
    beside = labels_file(model)
    try:
        meta = json.loads(beside.read_text()) if beside.is_file() else None
    except (ValueError, UnicodeDecodeError):
        meta = None
    if isinstance(meta, dict) and "labels" in meta:
        labels = meta["labels"]
        if not isinstance(labels, list) or not all(isinstance(n, str) and n for n in labels):
            raise cli.UserError(f"{beside}: 'labels' must be a list of names, got {labels!r}")
        if twice := sorted({n for n in labels if labels.count(n) > 1}):
            raise cli.UserError(f"{beside}: 'labels' names {twice} more than once (one name per model output)")
        return labels, str(beside)
    if t.labels:
        return list(t.labels), "train.labels"
    return dataset.read_labels(), f"the data set's classes, {paths.LABELS}"
