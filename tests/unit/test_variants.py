"""pipeline/variants.py's table is what convert dispatches on: each row names a runtime, a
quantization and a converter that exist, and a row plus its converter is all a new variant needs."""

import json

import numpy as np
import pytest

from pipeline import convert, params, variants
from support import ROOT

CONVERT = params.load(ROOT / "params.yaml").convert


def test_every_row_names_a_runtime_a_quantization_and_a_converter_that_exist():
    for v in variants.TABLE:
        assert v.runtime in variants.RUNTIMES and v.quantization in variants.QUANTIZATIONS, v
        assert v.converter in convert.CONVERTERS, f"{v.name}: no converter {v.converter} in pipeline/convert.py"
    assert set(convert.CONVERTERS) == {v.converter for v in variants.TABLE}  # none left over
    assert len(variants.NAMES) == len(variants.TABLE)  # one row per name
    assert len({variants.model_path(n) for n in variants.NAMES}) == len(variants.NAMES)
    assert set(CONVERT.variants) <= set(variants.NAMES)


def test_the_table_answers_what_the_names_used_to_encode():
    # Written out by hand, not derived from the table: what the variants before the table were (a variant
    # added later is its own row, checked by the test above).
    runtimes = {
        "float32": "litert", "float16": "litert", "dynamic_int8": "litert", "full_int8": "litert",
        "full_int8_leaky": "litert", "onnx_float32": "onnxruntime", "onnx_int8": "onnxruntime",
    }  # fmt: skip
    assert {n: variants.runtime(n) for n in runtimes} == runtimes
    calibrated = {n for n in runtimes if variants.VARIANTS[n].calibrated}
    assert calibrated == {"full_int8", "full_int8_leaky", "onnx_int8"}
    assert str(variants.model_path("onnx_int8")) == "artifacts/onnx/onnx_int8.onnx"
    assert str(variants.metadata_path("full_int8")) == "artifacts/tflite/full_int8.json"
    assert variants.requirements("onnx_float32") == "lambda/requirements-onnxruntime.txt"


def test_a_new_row_and_its_converter_convert_with_metrics_and_metadata(tmp_path, monkeypatch):
    """A throwaway variant added the way a real one is: one row, one registered converter."""
    monkeypatch.chdir(tmp_path)
    row = variants.Variant("tiny_int8", "onnxruntime", "full_int8", "tiny_converter")
    monkeypatch.setitem(variants.VARIANTS, row.name, row)
    seen = {}

    def tiny_converter(job, variant):
        seen["photos"] = len(job.representative)
        variants.model_path(variant).write_bytes(b"x" * 2**20)
        return {"layers_kept_float": 2}

    monkeypatch.setitem(convert.CONVERTERS, "tiny_converter", tiny_converter)
    logs = {r: tmp_path / f"{r}.log" for r in variants.RUNTIMES}
    (tmp_path / "artifacts/onnx").mkdir(parents=True)
    model = type("Model", (), {"input_shape": (None, 75, 75, 3)})()
    job = convert.Job(model, np.zeros((3, 75, 75, 3), np.float32), CONVERT, logs, tmp_path)
    metrics = {}
    convert.convert_all(job, ["tiny_int8"], ["a", "b"], metrics)
    assert seen == {"photos": 3} and job.converted == {"tiny_int8"}
    assert metrics["tiny_int8"]["size_mb"] == 1.0 and metrics["tiny_int8"]["layers_kept_float"] == 2
    meta = json.loads((tmp_path / "artifacts/onnx/tiny_int8.json").read_text())
    assert meta["variant"] == "tiny_int8" and meta["labels"] == ["a", "b"] and meta["input_size"] == 75


def test_a_failing_converter_is_one_line_naming_the_variant_and_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def broken(job, variant):
        raise RuntimeError("first line\n" + "240 lines of converter output\n" * 3)

    monkeypatch.setitem(convert.CONVERTERS, "tflite_float16", broken)
    logs = {r: tmp_path / f"{r}.log" for r in variants.RUNTIMES}
    job = convert.Job(None, np.zeros((0,)), CONVERT, logs, tmp_path)
    with pytest.raises(params.UserError) as refused:
        convert.convert_all(job, ["float16"], [], {})
    assert str(refused.value) == f"converting float16 failed: RuntimeError: first line (details in {logs['litert']})"
