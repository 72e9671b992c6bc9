"""The manifest's images as arrays, decoded once with the single preprocessing function."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import cli, paths
from serving.images import load_image
from serving.labels import LABELS


def read_manifest(path: str = paths.MANIFEST) -> pd.DataFrame:
    if not Path(path).exists():
        raise cli.UserError(f"{path} not found: run the data stage first (dvc repro data)")
    return pd.read_csv(path)


def load_split(manifest: pd.DataFrame, split: str, size: int, limit: int = 0):
    """(uint8 images N x size x size x 3, int labels N, paths) for one split of the manifest."""
    rows = manifest[manifest["split"] == split]
    if limit:
        rows = rows.iloc[:limit]
    if rows.empty:
        raise cli.UserError(f"the manifest has no '{split}' images")
    labels = np.array([LABELS.index(label) for label in rows["label"]], dtype=np.int64)
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
