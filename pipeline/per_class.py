"""Per-class numbers and the misclassified photos for the report, from verify's predictions (one row per
model and test photo: path, label, predicted, p_<class>...). Pure tables, except write_thumbnails."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from pipeline import files
from serving.images import ImageError, open_image, to_rgb


def confusion_matrix(rows: pd.DataFrame, labels: list) -> pd.DataFrame:
    """Counts of one model's test photos: a row per actual class, a column per predicted class, both in
    labels' order (the model's outputs), every class present even where nothing fell in it."""
    matrix = pd.crosstab(pd.Categorical(rows["label"], labels), pd.Categorical(rows["predicted"], labels), dropna=False)
    matrix.index, matrix.columns = list(labels), list(labels)
    return matrix.rename_axis(index="actual", columns="predicted")


def scores(matrix: pd.DataFrame) -> pd.DataFrame:
    """precision, recall, F1 and support (test photos of the class) per class, from a confusion matrix
    (rows actual, columns predicted). A class the model never predicts has no precision (NaN: 0/0), and
    so no F1; a class without test photos has no recall."""
    counts = matrix.to_numpy(dtype=float)
    right = np.diag(counts)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, right / predicted, np.nan)
        recall = np.where(actual > 0, right / actual, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": actual.astype(int)}, index=matrix.index
    ).rename_axis("class")


def model_scores(predictions: pd.DataFrame, model: str, labels: list) -> pd.DataFrame:
    """scores() for one model of verify's predictions ("keras" or a variant's name)."""
    return scores(confusion_matrix(predictions[predictions["model"] == model], labels))


def misclassified(predictions: pd.DataFrame, model: str, count: int, per_class: int = 2) -> pd.DataFrame:
    """The model's most confident mistakes: path, label, predicted, probability (of the predicted class)
    and p_true (of the right one), most confident first (ties by path, so a rerun picks the same photos),
    at most per_class photos of each actual class so one confused class does not fill the gallery."""
    rows = predictions[(predictions["model"] == model) & (predictions["label"] != predictions["predicted"])]
    if rows.empty:
        return pd.DataFrame(columns=["path", "label", "predicted", "probability", "p_true"])
    picked = rows.assign(
        probability=[row[f"p_{row['predicted']}"] for _, row in rows.iterrows()],
        p_true=[row.get(f"p_{row['label']}", np.nan) for _, row in rows.iterrows()],
    ).sort_values(["probability", "path"], ascending=[False, True], kind="stable")
    picked = picked[picked.groupby("label").cumcount() < per_class]
    return picked.head(count)[["path", "label", "predicted", "probability", "p_true"]].reset_index(drop=True)


def write_thumbnails(mistakes: pd.DataFrame, folder: Path, size: int = 160, quality: int = 80) -> list:
    """A small JPEG (longest side size px, EXIF-oriented) per mistake, 01.jpg, 02.jpg... in folder; the
    folder's other JPEGs (an earlier run's) are removed. Returns each photo's file name, or None where
    the photo cannot be read (its path is in the table)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, path in enumerate(mistakes["path"], start=1):
        name = f"{i:02d}.jpg"
        try:
            with open_image(path) as img:
                img.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size
                small = to_rgb(ImageOps.exif_transpose(img))
        except (OSError, ImageError):
            names.append(None)
            continue
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        with files.atomic_path(folder / name) as tmp:
            small.save(tmp, format="JPEG", quality=quality, optimize=True)
        names.append(name)
    for stale in folder.glob("*.jpg"):
        if stale.name not in names:
            stale.unlink()
    return names
