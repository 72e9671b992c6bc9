"""The stages as `dvc repro` runs them (the small_run fixture ran the first repro)."""

import json

from support import LABELS, run


def test_second_repro_does_nothing(small_run):
    result = run(["dvc", "repro"], small_run)
    assert "Data and pipelines are up to date." in result.stdout
    assert "Running stage" not in result.stdout


def test_metrics_show_is_the_shipped_variants_headline(small_run):
    """dvc metrics show prints one line: the variant recommend chose, with its own verify and bench numbers;
    the per-variant detail stays in the stages' JSON and CSV files."""
    out = run(["dvc", "metrics", "show", "--md"], small_run).stdout
    chosen = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())["variant"]
    headline = json.loads((small_run / "artifacts/headline.json").read_text())
    verify = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    assert headline["variant"] == chosen and headline["accuracy"] == round(verify[chosen]["accuracy"], 4)
    for key in ("accuracy", "agreement", "p50_ms", "cold_start_s", "size_mb", "usd_million", "variant"):
        assert key in out
    assert "artifacts/headline.json" in out and chosen in out
    assert "keras.accuracy" not in out and "val_accuracy" not in out and "per_class" not in out


def test_the_default_data_set_s_verify_metrics_keep_their_keys(small_run):
    """Labels from the data changed nothing in what the clothing run reports: no variant excluded here."""
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    variants = ["float32", "float16", "dynamic_int8", "full_int8", "onnx_float32", "onnx_int8"]
    assert list(metrics) == ["keras", *variants, "test_images", "confidence"]
    assert set(metrics["keras"]) == {"accuracy", "weights", "size_mb", "logit_spread"}
    keys = {"size_mb", "accuracy", "agreement", "max_abs_prob_diff", "mean_abs_prob_diff"}
    paired = {"keras_only", "variant_only", "accuracy_diff", "accuracy_diff_low", "accuracy_diff_high"}
    for variant in variants:
        assert set(metrics[variant]) == keys | paired
    assert json.loads((small_run / "data/labels.json").read_text())["labels"] == sorted(LABELS)
