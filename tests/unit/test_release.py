"""The release manifest the recommend stage writes (pipeline/release.py): per variant what deploy ships
and checks, from convert's metadata, verify.json, targets.json and verify's predictions."""

import json

import pandas as pd
import pytest

from pipeline import cli, release

LABELS = ["1", "NA", "shoes"]  # class names a CSV reader would turn into a number and a missing value


def test_the_manifest_holds_each_variants_file_accuracy_refusals_and_smoke_answer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder, name in (("tflite", "full_int8"), ("onnx", "onnx_int8")):
        (tmp_path / "artifacts" / folder).mkdir(parents=True)
        meta = {"variant": name, "sha256": name[:4] * 16, "labels": LABELS, "input_size": 75}
        (tmp_path / f"artifacts/{folder}/{name}.json").write_text(json.dumps(meta))
    verify = {
        "keras": {"accuracy": 0.8},
        "full_int8": {"accuracy": 0.79},
        "onnx_int8": {"accuracy": 0.8},
        "excluded": {"full_int8": "full_int8: top-1 agreement 0.9 < verify.min_agreement 0.95"},
    }
    targets = {
        "x86_64": {"checked": True, "excluded": {"onnx_int8": "top-1 agreement 0.917 < 0.99"}},
        "arm64": {"checked": False, "excluded": {}},
    }
    predictions = pd.DataFrame(
        {
            "path": ["t/a.jpg", "t/b.jpg", "t/a.jpg", "t/b.jpg"],
            "label": ["1", "NA", "1", "NA"],
            "model": ["full_int8", "full_int8", "onnx_int8", "onnx_int8"],
            "predicted": [1, "NA", "shoes", "NA"],  # as pandas reads them: a class named 1 is a number
        }
    )
    manifest = release.describe("onnx_int8", ["full_int8", "onnx_int8"], verify, targets, predictions)
    assert manifest["variant"] == "onnx_int8" and manifest["labels"] == LABELS and manifest["input_size"] == 75
    assert manifest["variants"]["full_int8"] == {
        "model": "artifacts/tflite/full_int8.tflite",
        "sha256": "full" * 16,
        "runtime": "litert",
        "requirements": "lambda/requirements.txt",
        "accuracy": 0.79,
        "excluded": "full_int8: top-1 agreement 0.9 < verify.min_agreement 0.95",
        "excluded_on": {},
        "smoke_photo": "t/a.jpg",
        "smoke_answer": "1",
    }
    onnx = manifest["variants"]["onnx_int8"]
    assert onnx["model"] == "artifacts/onnx/onnx_int8.onnx" and onnx["runtime"] == "onnxruntime"
    assert onnx["excluded"] is None and onnx["excluded_on"] == {"x86_64": "top-1 agreement 0.917 < 0.99"}
    assert (onnx["smoke_photo"], onnx["smoke_answer"]) == ("t/a.jpg", "shoes")

    release.write(manifest)
    assert release.load() == manifest


def test_no_manifest_is_one_line_saying_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cli.UserError, match=r"artifacts/recommend/release.json not found: run `dvc repro` first"):
        release.load()
