"""The recommendation rule and the cost table, with exact expected values (no model needed), and
the recommend stage on the small run's real numbers."""

import json

import pandas as pd
import pytest

from conftest import copy_run, set_params, stage
from pipeline import gates, recommend, variants
from pipeline.cli import UserError
from pipeline.params import Cost, Recommend

VERIFY = {
    "keras": {"accuracy": 0.80},
    "float32": {"accuracy": 0.80, "agreement": 1.0},
    "float16": {"accuracy": 0.80, "agreement": 1.0},
    "dynamic_int8": {"accuracy": 0.795, "agreement": 0.98},  # drop 0.005: exactly at the threshold
    "full_int8": {"accuracy": 0.79, "agreement": 0.99},  # drop 0.01: over it
}
VARIANTS = ["float32", "float16", "dynamic_int8", "full_int8"]
RESULTS = pd.DataFrame(
    {
        "runtime": ["litert_float32", "litert_float16", "litert_dynamic_int8", "litert_full_int8"],
        "p50_ms": [11.0, 11.0, 9.0, 3.0],
        "process_s": [0.5, 0.4, 0.45, 0.3],
        "size_mb": [79.4, 39.8, 20.6, 21.1],
    }
).set_index("runtime")


ONNX = ["onnx_float32", "onnx_int8"]


def rule(prefer="warm_p50", drop=0.005, agreement=0.97):
    return Recommend(max_accuracy_drop=drop, min_agreement=agreement, prefer=prefer)


@pytest.mark.fast
def test_the_fastest_variant_failing_the_gate_is_not_shipped():
    choice = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule())
    assert choice["variant"] == "dynamic_int8"  # full_int8 is faster but loses 0.01
    assert choice["model"] == "artifacts/tflite/dynamic_int8.tflite"
    assert "lowest p50_ms (9)" in choice["reason"] and "rejected: full_int8" in choice["reason"]


@pytest.mark.fast
def test_a_value_at_the_threshold_passes_and_just_over_fails():
    assert gates.failures(VERIFY, "dynamic_int8", 0.005, 0.98, "recommend") == []
    assert gates.failures(VERIFY, "dynamic_int8", 0.0049, 0.98, "recommend") == [
        "dynamic_int8: accuracy 0.795 is 0.005 below Keras (0.8), more than recommend.max_accuracy_drop 0.0049"
    ]
    assert gates.failures(VERIFY, "dynamic_int8", 0.005, 0.981, "verify") == [
        "dynamic_int8: top-1 agreement 0.98 < verify.min_agreement 0.981"
    ]


@pytest.mark.fast
def test_ties_go_to_the_earlier_variant_and_prefer_picks_the_measure():
    assert recommend.recommend(RESULTS, VERIFY, ["float32", "float16"], rule())["variant"] == "float32"
    assert recommend.recommend(RESULTS, VERIFY, ["float16", "float32"], rule())["variant"] == "float16"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("cold_start"))["variant"] == "float16"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("size"))["variant"] == "dynamic_int8"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("size", drop=0.01))["variant"] == "dynamic_int8"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(drop=0.01))["variant"] == "full_int8"


@pytest.mark.fast
def test_no_variant_passing_names_every_reason():
    with pytest.raises(UserError) as err:
        recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(agreement=1.01))
    message = str(err.value)
    assert message.startswith("no variant passes recommend.max_accuracy_drop and recommend.min_agreement: ")
    assert message.count("top-1 agreement") == 4 and "full_int8: accuracy 0.79 is 0.01 below" in message


@pytest.mark.fast
def test_cost_table_exact_values():
    cost = Cost(
        memory_mb=[512, 1769, 2653, 3538],
        price_per_gb_second=0.0000166667,
        price_per_million_requests=0.2,
        mb_per_vcpu=1769,
    )
    results = pd.DataFrame({"runtime": ["a"], "p50_ms": [4.2], "p50_1_thread_ms": [7.0]}).set_index("runtime")
    table = recommend.cost_table(results, cost).set_index("memory_mb")
    # 512 MB is 0.289 vCPU: 7.0 / 0.28943 = 24.19 ms, billed 25 ms.
    assert table.loc[512, "est_p50_ms"] == 24.2
    assert table.loc[512, "est_usd_per_million"] == round(1e6 * 0.5 * 0.025 * 0.0000166667 + 0.2, 2) == 0.41
    # One vCPU: the one-thread latency; 1.5 vCPUs: half way to the two-thread one; two: the two-thread one.
    assert table.loc[1769, "est_p50_ms"] == 7.0 and table.loc[2653, "est_p50_ms"] == pytest.approx(5.6, abs=0.05)
    assert table.loc[3538, "est_p50_ms"] == 4.2
    # 4.2 ms bills as 5 ms: 3538/1024 GB x 0.005 s x price + the request price.
    assert table.loc[3538, "est_usd_per_million"] == 0.49


def test_stage_on_the_small_run(small_run):
    """The stage as dvc repro ran it: its choice is one of the variants, with a model that exists."""
    choice = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())
    assert choice["variant"] in VARIANTS + ONNX and (small_run / choice["model"]).is_file()
    assert "has the lowest p50_ms" in choice["reason"]  # the small run's params: prefer warm_p50
    cost = pd.read_csv(small_run / "artifacts/recommend/cost.csv")
    assert set(cost["memory_mb"]) == {512, 1024, 1769, 3008} and len(cost) == 4 * 6


# The stage on tables of our own (the small run's numbers are measured, so nothing about them is known
# in advance): float32, float16 and onnx_float32 pass; the int8s lose too much or agree too little.
STAGE_VERIFY = {
    "keras": {"accuracy": 0.80},
    "float32": {"accuracy": 0.80, "agreement": 1.0},
    "float16": {"accuracy": 0.80, "agreement": 1.0},
    "dynamic_int8": {"accuracy": 0.80, "agreement": 0.96},  # under min_agreement 0.97
    "full_int8": {"accuracy": 0.78, "agreement": 0.99},  # 0.02 below Keras
    "onnx_float32": {"accuracy": 0.80, "agreement": 1.0},
    "onnx_int8": {"accuracy": 0.79, "agreement": 0.98},  # 0.01 below Keras
}
STAGE_BENCH = """runtime,p50_ms,p50_1_thread_ms,process_s,size_mb
keras,30.0,50.0,5.0,80.1
litert_float32,12.0,20.0,0.40,79.4
litert_float16,11.0,19.0,0.45,39.8
litert_dynamic_int8,8.0,14.0,0.42,20.6
litert_full_int8,2.0,3.5,0.30,21.1
onnxruntime_float32,10.0,18.0,0.60,79.5
onnxruntime_int8,3.0,5.0,0.50,20.4
"""


def test_stage_reads_its_tables_and_writes_the_choice_and_costs(tmp_path, small_run):
    project = copy_run(small_run, tmp_path / "p", "tflite", "onnx", "model", "data", "report", "bench", "verify")
    (project / "artifacts/metrics/verify.json").write_text(json.dumps(STAGE_VERIFY))
    (project / "artifacts/bench").mkdir()
    (project / "artifacts/bench/results.csv").write_text(STAGE_BENCH)
    set_params(project, **{"recommend.max_accuracy_drop": 0.005, "recommend.min_agreement": 0.97})
    stage("recommend", project)
    choice = json.loads((project / "artifacts/recommend/recommendation.json").read_text())
    assert {k: choice[k] for k in ("variant", "model", "runtime", "requirements")} == {
        "variant": "onnx_float32",
        "model": "artifacts/onnx/onnx_float32.onnx",
        "runtime": "onnxruntime",
        "requirements": "lambda/requirements-onnxruntime.txt",
    }
    assert "lowest p50_ms (10" in choice["reason"]
    assert "rejected: dynamic_int8, full_int8, onnx_int8" in choice["reason"]
    cost = pd.read_csv(project / "artifacts/recommend/cost.csv").set_index(["runtime", "memory_mb"])
    # 1769 MB is one vCPU: the one-thread p50, 18.0 ms for ONNX Runtime float32, billed as 18 ms:
    # 1.7275 GB x 0.018 s = 0.031096 GB-s a request, x $0.0000166667 x 1e6 = $0.52, + $0.20 for requests.
    assert cost.loc[("onnxruntime_float32", 1769), "est_p50_ms"] == 18.0
    assert cost.loc[("onnxruntime_float32", 1769), "est_usd_per_million"] == 0.72
    assert len(cost) == 4 * 7


def test_no_variant_passing_stops_the_stage_in_one_line(tmp_path, small_run):
    project = copy_run(small_run, tmp_path / "p")
    # Thresholds stay in [0, 1] (params checks them): the verify numbers the stage reads fall short instead.
    verify_path = project / "artifacts/metrics/verify.json"
    verify = json.loads(verify_path.read_text())
    for name, m in verify.items():
        if isinstance(m, dict) and name != "keras":
            m["agreement"] = 0.5
    verify_path.write_text(json.dumps(verify))
    set_params(project, **{"recommend.min_agreement": 0.97})
    result = stage("recommend", project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no variant passes recommend.max_accuracy_drop")


@pytest.mark.fast
def test_the_rule_picks_across_runtimes_and_names_what_the_function_needs():
    verify = {
        **VERIFY,
        "onnx_float32": {"accuracy": 0.80, "agreement": 1.0},
        "onnx_int8": {"accuracy": 0.798, "agreement": 0.985},
    }
    onnx_rows = pd.DataFrame(
        {"runtime": ["onnxruntime_float32", "onnxruntime_int8"], "p50_ms": [8.0, 3.1], "process_s": [0.6, 0.5],
         "size_mb": [79.4, 20.4]}
    ).set_index("runtime")  # fmt: skip
    results = pd.concat([RESULTS, onnx_rows])
    choice = recommend.recommend(results, verify, VARIANTS + ONNX, rule())
    # full_int8 (3.0 ms) loses 0.01 accuracy: ONNX Runtime's int8 (3.1 ms, drop 0.002) ships.
    assert choice == {
        "variant": "onnx_int8",
        "model": "artifacts/onnx/onnx_int8.onnx",
        "runtime": "onnxruntime",
        "requirements": "lambda/requirements-onnxruntime.txt",
        "reason": choice["reason"],
    }
    assert "lowest p50_ms (3.1)" in choice["reason"] and "rejected: full_int8" in choice["reason"]
    litert = recommend.recommend(results, verify, VARIANTS + ONNX, rule(drop=0.01))
    assert (litert["variant"], litert["runtime"], litert["requirements"]) == (
        "full_int8", "litert", "lambda/requirements.txt"
    )  # fmt: skip
    assert [variants.variant_of_row(variants.bench_row(v)) for v in VARIANTS + ONNX] == VARIANTS + ONNX
