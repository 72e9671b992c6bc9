"""The stages as `dvc repro` runs them (the small_run fixture ran the first repro)."""

import json

from conftest import LABELS, run


def test_second_repro_does_nothing(small_run):
    result = run(["dvc", "repro"], small_run)
    assert "Data and pipelines are up to date." in result.stdout
    assert "Running stage" not in result.stdout


def test_metrics_show_lists_the_headline_numbers(small_run):
    out = run(["dvc", "metrics", "show", "--md"], small_run).stdout
    for variant in ("float32", "float16", "dynamic_int8", "full_int8"):
        for metric in ("accuracy", "agreement", "max_abs_prob_diff"):
            assert f"{variant}.{metric}" in out
        assert f"litert_{variant}.p50_ms" in out
    assert "keras.accuracy" in out and "val_accuracy" in out
    assert "per_class" not in out and "outside_ops" not in out  # detail stays in CSV files


def test_the_default_data_set_s_verify_metrics_keep_their_keys(small_run):
    """Labels from the data changed nothing in what the clothing run reports: no variant excluded here."""
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    variants = ["float32", "float16", "dynamic_int8", "full_int8", "onnx_float32", "onnx_int8"]
    assert list(metrics) == ["keras", *variants, "test_images"]
    assert set(metrics["keras"]) == {"accuracy", "weights", "size_mb", "logit_spread"}
    for variant in variants:
        assert set(metrics[variant]) == {"size_mb", "accuracy", "agreement", "max_abs_prob_diff", "mean_abs_prob_diff"}
    assert json.loads((small_run / "data/labels.json").read_text())["labels"] == sorted(LABELS)
