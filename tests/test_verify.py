import json

import pandas as pd

from conftest import copy_run, set_params, stage


def test_parity_numbers_on_real_test_images(small_run):
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    # A parity check is only meaningful when the model's classes are told apart (TOOLCHAIN trap).
    assert metrics["keras"]["logit_spread"] > 0.05
    assert metrics["keras"]["weights"] == "none"
    assert metrics["float32"]["agreement"] == 1.0 and metrics["float32"]["max_abs_prob_diff"] < 1e-3
    assert metrics["float16"]["max_abs_prob_diff"] < 0.02
    # ONNX Runtime float32 computes the same function in another order of operations.
    assert metrics["onnx_float32"]["agreement"] >= 0.99 and metrics["onnx_float32"]["max_abs_prob_diff"] < 1e-3
    for variant in ("dynamic_int8", "full_int8", "onnx_int8"):
        assert 0 < metrics[variant]["max_abs_prob_diff"] < 0.5
        assert metrics[variant]["agreement"] >= 0.8
    # Both int8s lose at most a few points of accuracy against Keras on this small run.
    for variant in ("full_int8", "onnx_int8"):
        assert metrics[variant]["accuracy"] >= metrics["keras"]["accuracy"] - 0.1
    assert metrics["onnx_int8"]["size_mb"] < 0.35 * metrics["onnx_float32"]["size_mb"]

    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    assert len(predictions) == 7 * metrics["test_images"]
    for model, rows in predictions.groupby("model"):
        accuracy = (rows["predicted"] == rows["label"]).mean()
        assert round(accuracy, 4) == metrics[model]["accuracy"]
        probs = rows[[c for c in rows if c.startswith("p_")]].to_numpy()
        assert abs(probs.sum(axis=1) - 1).max() < 1e-4
    per_class = pd.read_csv(small_run / "artifacts/verify/per_class.csv").set_index("class")
    assert list(per_class.columns) == [
        "keras", "float32", "float16", "dynamic_int8", "full_int8", "onnx_float32", "onnx_int8"
    ]  # fmt: skip
    assert len(per_class) == 10
    keras_rows = predictions[predictions["model"] == "keras"]
    shoes = keras_rows[keras_rows["label"] == "shoes"]
    assert per_class.loc["shoes", "keras"] == round((shoes["predicted"] == "shoes").mean(), 4)


def test_a_failing_gate_stops_the_stage_with_the_reason(tmp_path, small_run):
    measured = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    variants = [name for name, m in measured.items() if isinstance(m, dict) and "agreement" in m]
    worst = min(variants, key=lambda v: measured[v]["agreement"])
    assert measured[worst]["agreement"] < 1.0, "every variant agrees on every photo: the small model is degenerate"
    project = copy_run(small_run, tmp_path / "p")
    set_params(project, **{"verify.min_agreement": 1.0})  # the worst variant misses it
    (project / "artifacts/metrics/verify.json").unlink()
    result = stage("verify", project, check=False)
    assert result.returncode == 2
    assert "verification failed" in result.stderr and "verify.min_agreement 1.0" in result.stderr
    assert (
        f"{worst}: top-1 agreement {measured[worst]['agreement']}" in result.stderr and "Traceback" not in result.stderr
    )
    # The metrics are written before the gate fails: the numbers that failed are there to read.
    assert json.loads((project / "artifacts/metrics/verify.json").read_text())[worst] == measured[worst]
