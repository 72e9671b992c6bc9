"""The bench stage's numbers as the small dvc repro measured them, and the recommendation rule."""

import json

import pandas as pd
import pytest

from conftest import RUNTIMES, copy_run, set_params, stage


def test_every_runtime_has_every_number(small_run):
    bench = json.loads((small_run / "artifacts/metrics/bench.json").read_text())
    assert list(bench["results"]) == RUNTIMES
    for name, m in bench["results"].items():
        assert 0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"], name
        assert m["cold_start_s"] == pytest.approx(m["import_s"] + m["load_s"] + m["first_prediction_s"], abs=1e-3)
        assert m["process_s"] > m["cold_start_s"] > 0
        assert m["peak_rss_mb"] > 20 and m["throughput_img_s"] > 0 and m["size_mb"] > 10
        assert 0 < m["fraction_of_peak"] < 5
    litert, keras = bench["results"]["litert_float32"], bench["results"]["keras"]
    # Memory is each fresh process's own: TensorFlow's is far above LiteRT's.
    assert keras["peak_rss_mb"] > 1.5 * litert["peak_rss_mb"]
    assert litert["handler_cold_start_s"] > 0 and litert["ops_outside_delegate"] == 0
    assert bench["results"]["litert_dynamic_int8"]["ops_outside_delegate"] > 0
    assert bench["environment_mb"]["tensorflow"] > 5 * bench["environment_mb"]["litert"] > 0
    onnx = bench["results"]["onnxruntime_float32"]
    assert onnx["agreement"] >= 0.95 and 0 <= onnx["accuracy"] <= 1 and bench["environment_mb"]["onnxruntime"] > 0
    assert bench["model"]["input_size"] == 75 and bench["machine"]["threads"] >= 1
    # Xception's multiply-adds scale with the input area: 8.36 G at 299 px (TOOLCHAIN.md).
    assert bench["model"]["gmacs"] == pytest.approx(8.36 * (75 / 299) ** 2, rel=0.1)


def test_recommendation_follows_the_rule(small_run):
    bench = json.loads((small_run / "artifacts/metrics/bench.json").read_text())
    choice = json.loads((small_run / "artifacts/bench/recommendation.json").read_text())
    litert = {k.removeprefix("litert_"): v for k, v in bench["results"].items() if k.startswith("litert_")}
    assert choice["variant"] == min(litert, key=lambda v: litert[v]["p50_ms"])  # prefer: warm_p50, all pass
    assert choice["model"] == f"artifacts/tflite/{choice['variant']}.tflite"
    assert "lowest p50_ms" in choice["reason"]


def test_no_variant_passing_is_a_clear_error(tmp_path, small_run):
    project = copy_run(small_run, tmp_path / "p")
    set_params(project, **{"recommend.min_agreement": 1.01})
    result = stage("bench", project, check=False)
    assert result.returncode == 2 and "no variant passes recommend.max_accuracy_drop" in result.stderr


def test_cost_estimate(small_run):
    cost = pd.read_csv(small_run / "artifacts/bench/cost.csv")
    assert set(cost["memory_mb"]) == {512, 1024, 1769, 3008}
    for _, rows in cost.groupby("runtime"):
        rows = rows.set_index("memory_mb")
        assert rows.loc[512, "est_p50_ms"] > rows.loc[1769, "est_p50_ms"]  # less memory, less CPU
        assert (rows["est_usd_per_million"] >= 0.2).all()  # never below the request price
