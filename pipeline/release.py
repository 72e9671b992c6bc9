"""The release manifest (paths.RELEASE): everything deploy ships and checks, written by the recommend
stage, so that deploy can read one file instead of four stages' outputs. Per variant of
convert.variants: its model file and sha256, runtime and requirements, verify's accuracy, why it may
not ship (excluded at verify, or on an architecture by the targets stage), and the smoke photo with
the answer verify got for it; the recommended variant; the model's labels and input size."""

import json
from pathlib import Path

import pandas as pd

from pipeline import cli, files, paths, variants


def describe(recommended: str, names: list, verify: dict, targets: dict, predictions: pd.DataFrame) -> dict:
    """The manifest from the stages' outputs: convert's metadata beside each model (labels, input size,
    sha256), verify.json, targets.json and verify's predictions (the smoke photo: each variant's first)."""
    entries, model = {}, {}
    for name in names:
        meta = json.loads(variants.metadata_path(name).read_text())
        model = model or {"labels": meta["labels"], "input_size": meta["input_size"]}
        rows = predictions[predictions["model"] == name]
        entries[name] = {
            "model": variants.model_path(name).as_posix(),
            "sha256": meta["sha256"],
            "runtime": variants.runtime(name),
            "requirements": variants.requirements(name),
            "accuracy": verify.get(name, {}).get("accuracy"),
            "excluded": verify.get("excluded", {}).get(name),
            "excluded_on": {a: o["excluded"][name] for a, o in targets.items() if name in o.get("excluded", {})},
            "smoke_photo": str(rows["path"].iloc[0]) if len(rows) else None,
            "smoke_answer": str(rows["predicted"].iloc[0]) if len(rows) else None,  # a class named 1 stays "1"
        }
    return {"variant": recommended, **model, "variants": entries}


def read_predictions(path: str = paths.PREDICTIONS) -> pd.DataFrame:
    """verify's predictions with every column as written: a class named 01, 1, NA or None stays that name."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write(manifest: dict) -> None:
    files.write_json(paths.RELEASE, manifest)


def load() -> dict:
    """The manifest, or one line saying which stage writes it."""
    path = Path(paths.RELEASE)
    if not path.exists():
        raise cli.UserError(f"{path} not found: run `dvc repro` first (the recommend stage writes it)")
    return json.loads(path.read_text())
