"""The manifest's images as arrays, decoded once with the single preprocessing function."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import cli, paths
from serving.images import load_image


def read_labelled(path: str) -> pd.DataFrame:
    """A table with class names in it (the manifest, verify's predictions): a class folder named 1 stays
    the label "1", one named NA or None stays that name, not a missing value."""
    return pd.read_csv(path, dtype={"label": str, "predicted": str}, keep_default_na=False)


def read_manifest(path: str = paths.MANIFEST) -> pd.DataFrame:
    if not Path(path).exists():
        raise cli.UserError(f"{path} not found: run the data stage first (dvc repro data)")
    return read_labelled(path)


def read_labels(path: str = paths.LABELS) -> list[str]:
    """The data set's classes in the model's output order, as the data stage found them."""
    if not Path(path).exists():
        raise cli.UserError(f"{path} not found: run the data stage first (dvc repro data)")
    return json.loads(Path(path).read_text())["labels"]


def model_labels(path: str = paths.MODEL_INFO) -> list[str]:
    """The model's labels, in its output order: its metadata carries them from the train stage on."""
    if not Path(path).exists():
        raise cli.UserError(f"{path} not found: run the train stage first (dvc repro train)")
    info = json.loads(Path(path).read_text())
    if "labels" not in info:
        raise cli.UserError(f"{path} names no labels (made by an older train stage): run dvc repro train")
    return info["labels"]


def load_split(manifest: pd.DataFrame, split: str, size: int, labels: list, limit: int = 0):
    """(uint8 images N x size x size x 3, int labels N, paths) for one split of the manifest; each label is
    its index in labels (the model's output order)."""
    rows = manifest[manifest["split"] == split]
    if limit:
        rows = rows.iloc[:limit]
    if rows.empty:
        raise cli.UserError(f"the manifest has no '{split}' images")
    unknown = sorted(set(rows["label"]) - set(labels))
    if unknown:
        raise cli.UserError(f"the manifest's {split} photos have classes {unknown}, not among the labels {labels}")
    index = {label: i for i, label in enumerate(labels)}
    labels = np.array([index[label] for label in rows["label"]], dtype=np.int64)
    # Pillow releases the GIL while decoding, so threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(
            tqdm(
                pool.map(lambda p: load_image(p, size), rows["path"]),
                total=len(rows),
                desc=f"decode {split} @{size}px",
                unit="img",
                disable=None,  # no bar when the log is not a terminal (dvc repro > log)
            )
        )
    return np.stack(images), labels, list(rows["path"])
