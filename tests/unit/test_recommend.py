"""The recommendation rule and the cost table, with exact expected values (no model needed). The stage
on the small run's real numbers: tests/stages/test_recommend_stage.py."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline import cost, gates, params, recommend
from pipeline.cli import UserError
from pipeline.params import Cost, Recommend
from support import ROOT

# verify.json's paired numbers, by hand: the photos only Keras / only the variant gets right, the accuracy
# difference and its interval (the interval's arithmetic is tested in test_gates.py; here only the rule).
SAME = {"keras_only": 0, "variant_only": 0, "accuracy_diff": 0.0, "accuracy_diff_low": 0.0, "accuracy_diff_high": 0.0}
VERIFY = {
    "keras": {"accuracy": 0.80},
    "confidence": 0.95,
    "float32": {"accuracy": 0.80, "agreement": 1.0, **SAME},
    "float16": {"accuracy": 0.80, "agreement": 1.0, **SAME},
    "dynamic_int8": {  # its interval's upper end exactly at -0.005
        "accuracy": 0.795, "agreement": 0.98, "keras_only": 2, "variant_only": 0,
        "accuracy_diff": -0.005, "accuracy_diff_low": -0.0125, "accuracy_diff_high": -0.005,
    },
    "full_int8": {  # the whole interval below -0.005
        "accuracy": 0.79, "agreement": 0.99, "keras_only": 4, "variant_only": 0,
        "accuracy_diff": -0.01, "accuracy_diff_low": -0.02, "accuracy_diff_high": -0.0051,
    },
}  # fmt: skip
VARIANTS = ["float32", "float16", "dynamic_int8", "full_int8"]
RESULTS = pd.DataFrame(
    {
        "runtime": ["float32", "float16", "dynamic_int8", "full_int8"],
        "p50_ms": [11.0, 11.0, 9.0, 3.0],
        "process_s": [0.5, 0.4, 0.45, 0.3],
        "size_mb": [79.4, 39.8, 20.6, 21.1],
    }
).set_index("runtime")


ONNX = ["onnx_float32", "onnx_int8"]


BOOTSTRAP = {"bootstrap_resamples": 200, "bootstrap_seed": 0, "stable_share": 0.95}


def rule(prefer="warm_p50", drop=0.005, agreement=0.97):
    return Recommend(max_accuracy_drop=drop, min_agreement=agreement, prefer=prefer, **BOOTSTRAP)


def test_the_fastest_variant_failing_the_gate_is_not_shipped():
    choice = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule())
    assert choice["variant"] == "dynamic_int8"  # full_int8 is faster but loses 0.01
    assert choice["model"] == "artifacts/tflite/dynamic_int8.tflite"
    assert "lowest p50_ms (9)" in choice["reason"] and "rejected: full_int8" in choice["reason"]


def test_a_value_at_the_threshold_passes_and_just_over_fails():
    assert gates.failures(VERIFY, "dynamic_int8", 0.005, 0.98, "recommend") == []
    assert gates.failures(VERIFY, "dynamic_int8", 0.0049, 0.98, "recommend") == [
        "dynamic_int8: accuracy 0.795 is 0.005 below Keras (0.8) and its 95% interval on the difference "
        "[-0.0125, -0.0050] (2 photos only Keras gets right, 0 only the variant) lies wholly below "
        "-recommend.max_accuracy_drop 0.0049"
    ]
    assert gates.failures(VERIFY, "dynamic_int8", 0.005, 0.981, "verify") == [
        "dynamic_int8: top-1 agreement 0.98 < verify.min_agreement 0.981"
    ]


def test_ties_go_to_the_earlier_variant_and_prefer_picks_the_measure():
    assert recommend.recommend(RESULTS, VERIFY, ["float32", "float16"], rule())["variant"] == "float32"
    assert recommend.recommend(RESULTS, VERIFY, ["float16", "float32"], rule())["variant"] == "float16"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("cold_start"))["variant"] == "float16"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("size"))["variant"] == "dynamic_int8"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("size", drop=0.01))["variant"] == "dynamic_int8"
    assert recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(drop=0.01))["variant"] == "full_int8"


def test_no_variant_passing_names_every_reason():
    with pytest.raises(UserError) as err:
        recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(agreement=1.01))
    message = str(err.value)
    assert message.startswith("no variant passes recommend.max_accuracy_drop and recommend.min_agreement: ")
    assert message.count("top-1 agreement") == 4 and "full_int8: accuracy 0.79 is 0.01 below" in message


PRICES = {
    "prices_region": "us-east-1",
    "prices_date": "2026-12-02",
    "x86_64_price_per_gb_second": 0.0000166667,
    "arm64_price_per_gb_second": 0.0000133334,
    "price_per_million_requests": 0.2,
    "api_price_per_million": 1.0,
    "api_price_per_million_past_tier": 0.9,
    "api_tier_millions": 300,
    "api_request_step_kb": 512,
    "requests_per_month_millions": 10,
    "logs_price_per_gb": 0.0,
    "snapstart_cache_price_per_gb_second": 0.0000015046,
    "snapstart_restore_price_per_gb": 0.0001397998,
    "snapstart_versions": 2,
}


def prices(**overrides) -> Cost:
    fields = {"memory_mb": [512, 1769, 2653, 3538], "photo": "phone", "cold_start_share": 0.01, "mb_per_vcpu": 1769}
    return Cost(**{**fields, **PRICES, **overrides})


# The handler end to end as bench writes it: runtime "a" on both photos, 1 and 2 threads; its cold start 0.4 s.
HANDLER = pd.DataFrame(
    {
        "runtime": ["a"] * 4,
        "photo": ["dataset", "dataset", "phone", "phone"],
        "threads": [1, 2, 1, 2],
        "p50_ms": [7.0, 4.2, 30.2, 20.0],
        "bytes": [30_000, 30_000, 690_000, 690_000],  # the phone photo: 0.69 MB, 920,000 bytes in base64
        "log_bytes": [300, 300, 300, 300],
    }
)
COLD = pd.DataFrame({"runtime": ["a"], "handler_cold_start_s": [0.4]}).set_index("runtime")


def test_lambda_rounds_each_duration_up_to_the_millisecond():
    assert [cost.billed_ms(ms) for ms in (4.2, 5.0, 5.0001, 0.4)] == [5, 5, 6, 1]
    assert 0.1 * 3 * 10 > 3 and cost.billed_ms(0.1 * 3 * 10) == 3  # float noise is not a millisecond


def test_a_million_requests_by_part_exact_values():
    """30.2 ms bills as 31 ms; 1769 MB is 1.7275 GB; init 400 ms for 1% of requests; $0.20 + $1.00 requests."""
    parts = cost.per_million(30.2, 400.0, 1769, "x86_64", prices())
    gb = 1769 / 1024
    assert parts["usd_compute"] == round(1e6 * 0.031 * gb * 0.0000166667, 4) == 0.8926
    assert parts["usd_init"] == round(0.01 * 1e6 * 0.400 * gb * 0.0000166667, 4) == 0.1152
    assert (parts["usd_requests"], parts["usd_door"]) == (0.2, 1.0)
    assert parts["usd_per_million"] == round(0.8925636 + 0.1151695 + 0.2 + 1.0, 4) == 2.2077
    arm = cost.per_million(30.2, 400.0, 1769, "arm64", prices())
    assert arm["usd_compute"] == round(1e6 * 0.031 * gb * 0.0000133334, 4) == 0.7141
    # No API in front (invoked directly), no cold starts: the compute and Lambda's request price only.
    bare = cost.per_million(30.2, 400.0, 1769, "x86_64", prices(cold_start_share=0.0), door="function_url")
    assert bare["usd_per_million"] == round(0.8925636 + 0.2, 4) and bare["usd_init"] == bare["usd_door"] == 0


def test_each_front_door_priced_by_hand_for_a_body_under_and_over_512_kb():
    """HTTP API: one billed request per started 512 KB (524,288 bytes) of the body; a function URL: none.
    Logs: Lambda's START (67 bytes), END (52) and REPORT (145) lines plus the handler's, per binary GB."""
    c = prices(logs_price_per_gb=0.5)
    small, phone = 400_000, 920_000  # 300,000 and 690,000 raw bytes in base64 (4 characters per 3 bytes)
    assert (cost.base64_bytes(300_000), cost.base64_bytes(690_000)) == (small, phone)
    assert cost.PLATFORM_LOG_BYTES == 67 + 52 + 145
    exact = (67 + 52 + 145 + 300) * 1e6 / 1024**3 * 0.5  # 564 bytes a request
    logs = round(exact, 4)
    assert logs == 0.2626
    rows = {
        (door, body): cost.per_million(30.2, 400.0, 1769, "x86_64", c, door, body, 300)
        for door in ("http_api", "function_url")
        for body in (small, phone)
    }
    assert rows[("http_api", small)]["usd_door"] == 1.0  # 400,000 < 524,288: one request
    assert rows[("http_api", phone)]["usd_door"] == 2.0  # 920,000 / 524,288 = 1.75: two requests
    assert rows[("function_url", small)]["usd_door"] == rows[("function_url", phone)]["usd_door"] == 0.0
    assert {r["usd_logs"] for r in rows.values()} == {logs}
    compute, init = 0.8925636, 0.1151695
    assert rows[("http_api", phone)]["usd_per_million"] == round(compute + init + 0.2 + 2.0 + exact, 4)
    assert rows[("function_url", phone)]["usd_per_million"] == round(compute + init + 0.2 + exact, 4)
    # 200 M photos a month over 512 KB are 400 M billed requests: 300 M at $1.00, 100 M at $0.90.
    tiered = cost.per_million(30.2, 400.0, 1769, "x86_64", prices(requests_per_month_millions=200), "http_api", phone)
    assert tiered["usd_door"] == round(2 * (300 * 1.0 + 100 * 0.9) / 400, 4) == 1.95


def test_snapstart_prices_two_cached_snapshots_and_a_restore_per_cold_start_by_hand():
    """1769 MB is 1.7275 GB. Cache: 2 versions x 1.7275 GB x 730 h x 3600 s x $0.0000015046 = $13.6617 a
    month, over 10 M requests: $1.3662 per million. Restores: 1% of a million x 1.7275 GB x $0.0001397998
    = $2.4151. Off: nothing."""
    gb = 1769 / 1024
    cache = 2 * gb * 730 * 3600 * 0.0000015046 / 10
    restore = 0.01 * 1e6 * gb * 0.0001397998
    assert (round(cache, 4), round(restore, 4)) == (1.3662, 2.4151)
    on = cost.per_million(30.2, 400.0, 1769, "x86_64", prices(), "function_url", 0, 0, snapstart=True)
    off = cost.per_million(30.2, 400.0, 1769, "x86_64", prices(), "function_url", 0, 0)
    assert on["usd_snapstart"] == round(cache + restore, 4) and off["usd_snapstart"] == 0.0
    assert on["usd_per_million"] == round(off["usd_per_million"] + cache + restore, 4)


def test_the_api_bills_a_started_512_kb_step_and_blends_its_tiers_by_hand():
    """512 KB is 524,288 bytes: a body of exactly that is one billed request, one byte more two, none at
    all still one. The tiers' blend on API Gateway's REST API prices (first 333 M at $3.50, past them
    $2.80; a first-tier price other than $1.00, so a product and a quotient differ): 400 M billed
    requests are 333 x 3.50 + 67 x 2.80 = $1,353.10, $3.38275 a million."""
    assert [cost.api_steps(body, 512) for body in (0, 524_288, 524_289)] == [1, 1, 2]  # kills api_steps 9 (x 1025)
    rest = prices(api_price_per_million=3.5, api_price_per_million_past_tier=2.8, api_tier_millions=333)
    assert cost.api_price(rest, 400) == pytest.approx(1353.10 / 400)  # kills api_price 3 (tier / price)
    assert cost.api_price(rest, 333) == cost.api_price(rest, 1) == 3.5


def test_a_duration_is_known_to_the_nanosecond_and_two_vcpus_is_as_fast_as_it_gets():
    """Under half a nanosecond over a whole millisecond is float noise (5 ms); a whole nanosecond over bills
    the next one. Past two vCPUs (4,423 MB is 2.5 at 1,769 MB a vCPU; 10,240 MB, Lambda's largest, 5.8) the
    two-thread time stays: the handler runs two threads, the line from one to two vCPUs does not go on."""
    assert [cost.billed_ms(ms) for ms in (5.0000004, 5.000001)] == [5, 6]  # kills billed_ms 6 (round to 7)
    assert [cost.lambda_ms(30.2, 20.0, mb, 1769) for mb in (3538, 4423, 10240)] == [20.0] * 3  # lambda_ms 7 (>= 3)


def test_a_long_request_at_the_largest_memory_priced_by_hand_to_the_cent():
    """Parts large enough that a millionth of them shows in the 4th decimal. 10 s at 10,240 MB (10 GB) on
    x86: 1e6 x 10 s x 10 GB x $0.0000166667 = $1,666.67, and the same init when every request is cold.
    Logs: a request writing 512 KiB (Lambda's 264 bytes and the handler's rest) is 1e6 x 2^19 / 2^30 =
    488.28125 GB at $0.50: $244.140625. SnapStart: 2 snapshots x 10 GB x 730 h x 3600 s x $0.0000015046
    over 10 M requests is $7.9081776 a million, a restore per request 1e6 x 10 GB x $0.0001397998 =
    $1,397.998. With Lambda's $0.20 and the API's $1.00 (one step: no body)."""
    c = prices(cold_start_share=1.0, logs_price_per_gb=0.5)
    parts = cost.per_million(10_000.0, 10_000.0, 10240, "x86_64", c, "http_api", 0, 2**19 - 264, snapstart=True)
    assert (parts["usd_compute"], parts["usd_init"]) == (1666.67, 1666.67)  # per_million 21, 28 (1e6 + 1)
    assert parts["usd_logs"] == 244.1406  # kills per_million 45 (1000001 x: 244.1409)
    assert parts["usd_snapstart"] == round(7.9081776 + 1397.998, 4) == 1405.9062  # snapstart_per_million 13
    assert parts["usd_per_million"] == round(2 * 1666.67 + 0.2 + 1.0 + 244.140625 + 7.9081776 + 1397.998, 4)
    # Called without a log size, a request writes Lambda's 264 bytes only: 264e6 / 2^30 GB x $0.50.
    bare = cost.per_million(30.2, 400.0, 1769, "x86_64", prices(logs_price_per_gb=0.5))
    assert bare["usd_logs"] == round(264e6 / 1024**3 * 0.5, 4) == 0.1229  # kills per_million 4 (default 1 byte)


def test_cost_table_prices_the_handler_end_to_end_at_each_cpu_share():
    table = recommend.cost_table(HANDLER, COLD, prices(), deploy_memory_mb=1024)
    both = table[table["architecture"] == "x86_64"].set_index("memory_mb")
    x86 = both[both["door"] == "http_api"]
    assert list(x86.index) == [512, 1024, 1769, 2653, 3538]  # cost.memory_mb and the deploy's
    assert set(table["photo"]) == {"phone"}  # cost.photo's times, not the data set photo's
    # 512 MB is 0.2894 vCPU: the one-thread 30.2 ms stretches to 104.34 ms, billed 105; init 1382.03 ms, billed 1383.
    assert (x86.loc[512, "est_ms"], x86.loc[512, "billed_ms"], x86.loc[512, "init_ms"]) == (104.34, 105, 1382.0)
    assert x86.loc[512, "usd_compute"] == round(1e6 * 0.105 * 0.5 * 0.0000166667, 4)
    assert x86.loc[512, "usd_init"] == round(0.01 * 1e6 * 1.383 * 0.5 * 0.0000166667, 4)
    # One vCPU: the one-thread time; 1.5 vCPUs: half way to the two-thread one; two vCPUs: the two-thread one.
    assert (x86.loc[1769, "billed_ms"], x86.loc[2653, "est_ms"], x86.loc[3538, "est_ms"]) == (31, 25.1, 20.0)
    # The phone photo (920,000 bytes in base64) is two HTTP API requests: $2.00 behind the API, $0 behind a URL.
    api, url = both[both["door"] == "http_api"], both[both["door"] == "function_url"]
    assert (
        api.loc[1769, "usd_per_million"] == round(0.8925636 + 0.1151695 + 0.2 + 2.0, 4)
        and api.loc[1769, "init_ms"] == 400.0
    )
    assert url.loc[1769, "usd_per_million"] == round(0.8925636 + 0.1151695 + 0.2, 4)
    assert (api["body_bytes"] == 920_000).all() and (api["log_bytes"] == 264 + 300).all()
    arm = table[(table["architecture"] == "arm64") & (table["door"] == "http_api")].set_index("memory_mb")
    assert set(arm["latency"]) == {"x86's, unmeasured"} and set(x86["latency"]) == {"measured"}
    assert (arm["billed_ms"] == x86["billed_ms"]).all() and arm.loc[1769, "usd_compute"] == 0.7141


def test_prefer_cost_ranks_at_the_deploys_memory_and_can_disagree_with_warm_p50():
    """b's handler is 1 ms slower warm, but a's cold start is 3 s: with a cold start in every other
    request, a costs more. prefer: cost ranks by the deploy's memory size and architecture."""
    handler = pd.concat([HANDLER, HANDLER.assign(runtime="b", p50_ms=HANDLER["p50_ms"] + 1)])
    cold = pd.DataFrame({"runtime": ["a", "b"], "handler_cold_start_s": [3.0, 0.4]}).set_index("runtime")
    table = recommend.cost_table(handler, cold, prices(cold_start_share=0.5), deploy_memory_mb=1769)
    deploy = params.load(ROOT / "params.yaml").deploy
    at = recommend.deploy_costs(table, deploy)
    assert at["a"] > at["b"]
    results = pd.DataFrame({"runtime": ["float32", "full_int8"], "p50_ms": [3.0, 4.0],
                            "usd_per_million": [at["a"], at["b"]]}).set_index("runtime")  # fmt: skip
    passing = {
        "keras": {"accuracy": 0.8},
        **{v: {"accuracy": 0.8, "agreement": 1.0, **SAME} for v in ("float32", "full_int8")},
    }
    assert recommend.recommend(results, passing, ["float32", "full_int8"], rule("cost"))["variant"] == "full_int8"
    assert recommend.recommend(results, passing, ["float32", "full_int8"], rule())["variant"] == "float32"


def test_the_rule_picks_across_runtimes_and_names_what_the_function_needs():
    verify = {
        **VERIFY,
        "onnx_float32": {"accuracy": 0.80, "agreement": 1.0, **SAME},
        "onnx_int8": {
            "accuracy": 0.798,
            "agreement": 0.985,
            **SAME,
            "accuracy_diff": -0.002,
            "accuracy_diff_low": -0.01,
        },
    }
    onnx_rows = pd.DataFrame(
        {"runtime": ["onnx_float32", "onnx_int8"], "p50_ms": [8.0, 3.1], "process_s": [0.6, 0.5],
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
        "not_chosen": choice["not_chosen"],
    }
    assert "lowest p50_ms (3.1)" in choice["reason"] and "rejected: full_int8" in choice["reason"]
    litert = recommend.recommend(results, verify, VARIANTS + ONNX, rule(drop=0.01))
    assert (litert["variant"], litert["runtime"], litert["requirements"]) == (
        "full_int8", "litert", "lambda/requirements.txt"
    )  # fmt: skip


def test_every_variant_not_chosen_says_why():
    choice = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule())
    assert list(choice["not_chosen"]) == ["float32", "float16", "full_int8"]  # convert.variants' order
    gate = gates.failures(VERIFY, "full_int8", 0.005, 0.97, "recommend")  # the gate's own words, numbers in them
    assert gate and choice["not_chosen"]["full_int8"] == "; ".join(g.removeprefix("full_int8: ") for g in gate)
    assert choice["not_chosen"]["float16"] == (
        "passes the gate, but its p50_ms is 11 against dynamic_int8's 9 (1.22x); 39.8 MiB against 20.6"
    )
    tie = recommend.recommend(RESULTS, VERIFY, ["float32", "float16"], rule())["not_chosen"]
    assert tie == {"float16": "passes the gate; its p50_ms ties float32's (11): the tie goes to the earlier "
                   "in convert.variants; 39.8 MiB against 79.4"}  # fmt: skip
    by_size = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule("size"))["not_chosen"]
    assert by_size["float16"] == "passes the gate, but its size_mb is 39.8 against dynamic_int8's 20.6 (1.93x)"


# Issue 34's second pass on recommend.py (mutation_2026-12-08.md): each test names the mutants it kills.


def test_a_target_the_targets_stage_left_out_is_unchecked_and_said_after_the_reason():
    """on_target 2, 3, 9, 10 (the left-out entry's keys); recommend 53 (`reason =` for `+=`)."""
    assert recommend.on_target({}, "arm64") == {
        "architecture": "arm64",
        "checked": False,
        "unchecked": "targets.architectures leaves it out",
        "excluded": {},
    }
    reason = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(), recommend.on_target({}, "arm64"))["reason"]
    assert reason.startswith("dynamic_int8 has the lowest p50_ms (9) among the variants")
    assert reason.endswith("; rejected: full_int8; unchecked on arm64: targets.architectures leaves it out")


def test_the_reason_lists_the_rejected_with_commas_and_says_nothing_when_none_is():
    """recommend 40, 43 (a "rejected" tail where none is), 42 (its separator)."""
    every = recommend.recommend(RESULTS, VERIFY, ["float32", "float16"], rule())["reason"]
    assert every.endswith("(its difference: +0 [+0, +0], agreement: 1.0)") and "rejected" not in every
    two = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(agreement=0.985))["reason"]
    assert two.endswith("; rejected: dynamic_int8, full_int8")  # dynamic_int8 agrees on 0.98 only


def test_a_variant_failing_twice_says_both_and_the_refusal_separates_each_reason():
    """recommend 61 (a variant's reasons joined by "; "), 18 (the refusal's reasons joined by "; ")."""
    # full_int8: agreement 0.99 under 0.995 and its interval wholly below -0.005.
    choice = recommend.recommend(RESULTS, VERIFY, VARIANTS, rule(agreement=0.995))
    assert choice["not_chosen"]["full_int8"] == (
        "top-1 agreement 0.99 < recommend.min_agreement 0.995; accuracy 0.79 is 0.01 below Keras (0.8) and its "
        "95% interval on the difference [-0.0200, -0.0051] (4 photos only Keras gets right, 0 only the variant) "
        "lies wholly below -recommend.max_accuracy_drop 0.005"
    )
    with pytest.raises(UserError) as err:
        recommend.recommend(RESULTS, VERIFY, ["float32", "float16"], rule(agreement=1.01))
    assert str(err.value) == (
        "no variant passes recommend.max_accuracy_drop and recommend.min_agreement: "
        "float32: top-1 agreement 1.0 < recommend.min_agreement 1.01; "
        "float16: top-1 agreement 1.0 < recommend.min_agreement 1.01"
    )


def test_an_older_bench_without_log_bytes_is_refused_with_what_to_do():
    """cost_table 10 (the refusal's message)."""
    with pytest.raises(UserError) as err:
        recommend.cost_table(HANDLER.drop(columns="log_bytes"), COLD, prices(), deploy_memory_mb=1769)
    assert "has no log_bytes (an older bench): run the bench stage again" in str(err.value)


def test_cost_table_keeps_bench_order_a_tenth_of_init_and_one_thread_count():
    """cost_table 12, 14, 17 (runtimes sorted instead of bench's order), 101, 103 (init_ms to the whole
    millisecond), 37 (the photo's size from a second row, which one thread count has not)."""
    handler = pd.concat([HANDLER.assign(runtime="b"), HANDLER])  # bench's order: b, then a
    cold = pd.DataFrame({"runtime": ["a", "b"], "handler_cold_start_s": [0.4, 0.41234]}).set_index("runtime")
    table = recommend.cost_table(handler, cold, prices(memory_mb=[1769]), deploy_memory_mb=1769)
    assert list(dict.fromkeys(table["runtime"])) == ["b", "a"]
    assert set(table[table["runtime"] == "b"]["init_ms"]) == {412.3}  # 412.34 ms at one vCPU, to a tenth
    one = HANDLER[HANDLER["threads"] == 1]  # a bench with one thread count: one row per photo
    alone = recommend.cost_table(one, COLD, prices(memory_mb=[3538]), deploy_memory_mb=3538)
    assert set(alone["est_ms"]) == {30.2} and set(alone["body_bytes"]) == {920_000}


def test_the_cost_table_passes_the_logged_bytes_and_snapstart_on():
    """cost_table 113, 122 (SnapStart not priced), 121 (the logged bytes dropped: 264 for 564)."""
    c = prices(memory_mb=[1769], logs_price_per_gb=0.5, cold_start_share=0.0)
    plain = recommend.cost_table(HANDLER, COLD, c, deploy_memory_mb=1769).set_index(["architecture", "door"])
    snap = recommend.cost_table(HANDLER, COLD, c, 1769, snapstart=True).set_index(["architecture", "door"])
    # 564 bytes a request (bench's 300 and Lambda's 264): 564e6 / 2^30 GB x $0.50 = $0.2626 a million.
    assert plain.loc[("x86_64", "function_url"), "usd_logs"] == round(564e6 / 1024**3 * 0.5, 4) == 0.2626
    # SnapStart, no cold start: two versions' snapshots cached a month (730 hours) at 1769 MB, per a million
    # of cost.requests_per_month_millions 10: 2 x 1.7275390625 GB x 2,628,000 s x $0.0000015046 / 10.
    cached = 2 * 1769 / 1024 * 730 * 3600 * 0.0000015046 / 10
    assert snap.loc[("x86_64", "function_url"), "usd_snapstart"] == round(cached, 4) == 1.3662
    assert set(plain["usd_snapstart"]) == {0.0}


def predictions_of(answers: dict, labels: list) -> pd.DataFrame:
    """verify's predictions.csv: one row per photo and model, photos p0, p1, ... (rows from the last photo
    back, so only the path lines them up)."""
    rows = [
        {"path": f"p{i}.jpg", "model": model, "predicted": said[i], "label": labels[i]}
        for model, said in answers.items()
        for i in range(len(labels))
    ]
    return pd.DataFrame(rows[::-1])


def test_photo_answers_are_right_and_agreeing_per_photo_in_path_order():
    """photo_answers (no fast test reached it)."""
    answers = {"keras": ["dress", "hat", "pants"], "v": ["dress", "shirt", "skirt"]}
    right, agrees = recommend.photo_answers(predictions_of(answers, ["dress", "shirt", "pants"]))
    assert {m: list(a) for m, a in right.items()} == {"keras": [True, False, True], "v": [True, True, False]}
    assert {m: list(a) for m, a in agrees.items()} == {"keras": [True, True, True], "v": [True, False, False]}


def test_a_resample_recomputes_the_gates_numbers_on_the_photos_drawn_and_keeps_exclusions():
    """resampled (no fast test reached it). Photos 0, 1, 1 of three: Keras right on photo 0 only, the variant
    on all three, agreeing on photo 0 only. Discordant: 2, both the variant's; the exact 95% interval of
    p = 2/2 is [0.025^(1/2), 1] = [0.158114, 1], the difference 2 (2p - 1) / 3: [-0.4558, +0.6667]."""
    right = {k: np.array(a) for k, a in {"keras": [1, 0, 0], "v": [1, 1, 1], "u": [1, 0, 0]}.items()}
    agrees = {k: np.array(a) for k, a in {"keras": [1, 1, 1], "v": [1, 0, 0], "u": [1, 1, 1]}.items()}
    right, agrees = ({k: a.astype(bool) for k, a in d.items()} for d in (right, agrees))
    verify = {"confidence": 0.95, "excluded": {"w": "too slow"}}
    again = recommend.resampled(verify, right, agrees, np.array([0, 1, 1]), ["v", "u"])
    assert again == {
        "keras": {"accuracy": 0.3333},
        "confidence": 0.95,
        "v": {
            "accuracy": 1.0,
            "agreement": 0.3333,
            "keras_only": 0,
            "variant_only": 2,
            "accuracy_diff": 0.6667,
            "accuracy_diff_low": -0.4558,
            "accuracy_diff_high": 0.6667,
        },
        # u answers as Keras does: a third right, no discordant photo, an interval of [0, 0].
        "u": {
            "accuracy": 0.3333,
            "agreement": 1.0,
            "keras_only": 0,
            "variant_only": 0,
            "accuracy_diff": 0.0,
            "accuracy_diff_low": 0.0,
            "accuracy_diff_high": 0.0,
        },  # fmt: skip
        "excluded": {"w": "too slow"},
    }
    assert "excluded" not in recommend.resampled({"confidence": 0.95}, right, agrees, np.array([0, 1]), ["v"])


def test_stability_counts_each_resamples_pick_and_none_where_nothing_passes():
    """stability (no fast test reached it). Four photos, Keras right on each. "fast" (1 ms) answers photo 0
    wrongly, "slow" (2 ms) agrees on all, "gone" (0.5 ms) was excluded at verify. With min_agreement 1.0, fast
    is picked exactly in the resamples that do not draw photo 0, slow in the others. The expected counts
    replay numpy's generator with the documented seed and draw (recommend.bootstrap_seed, 4 of 0-3)."""
    labels = ["dress", "hat", "pants", "shirt"]
    answers = {"keras": labels, "fast": ["hat", *labels[1:]], "slow": labels, "gone": labels}
    predictions = predictions_of(answers, labels)
    results = pd.DataFrame({"runtime": ["fast", "slow", "gone"], "p50_ms": [1.0, 2.0, 0.5]}).set_index("runtime")
    verify = {"keras": {"accuracy": 1.0}, "confidence": 0.95, "excluded": {"gone": "failed the gate"}}
    r = Recommend(
        max_accuracy_drop=1.0, min_agreement=1.0, prefer="warm_p50", bootstrap_resamples=50, bootstrap_seed=7,
        stable_share=0.9,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    fast = sum(0 not in rng.integers(0, 4, 4) for _ in range(50))
    assert 0 < fast < 50  # both picked: the seed decides how often
    picked = recommend.stability(results, verify, predictions, ["gone", "fast", "slow"], r, {})
    expected = {"fast": fast, "slow": 50 - fast}
    assert picked == {"resamples": 50, "seed": 7, "picks": expected}
    assert list(picked["picks"]) == sorted(expected, key=expected.get, reverse=True)  # most picked first
    wrong = predictions_of({"keras": labels, "fast": ["hat"] * 4}, labels)  # fast agrees on photo 1 only
    nothing = recommend.stability(results, verify, wrong, ["fast"], r, {})
    assert nothing == {"resamples": 50, "seed": 7, "picks": {"none": 50}}


def test_the_stability_note_says_stable_from_the_share_on_and_within_noise_below_it():
    """stability_note (no fast test reached it): 190 of 200 is 95.0%, at recommend.stable_share 0.95."""
    r = rule()
    stable = {"resamples": 200, "picks": {"fast": 190, "slow": 8, "none": 2}}
    assert recommend.stability_note("fast", stable, r) == (
        "; stable: the same rule picks fast in 95.0% of 200 bootstrap resamples of the test photos"
    )
    noisy = {"resamples": 200, "picks": {"fast": 189, "slow": 9, "none": 2}}
    assert recommend.stability_note("fast", noisy, r) == (
        "; within noise: the same rule picks fast in 94.5% of 200 bootstrap resamples of the test photos "
        "(others: slow 4.5%, none 1.0%), under recommend.stable_share 0.95; decided by recommend.prefer "
        "warm_p50 (p50_ms), a tie by the earlier in convert.variants"
    )
    assert recommend.stability_note("other", noisy, r).startswith("; within noise: the same rule picks other in 0.0%")


def test_the_headline_is_the_shipped_variants_numbers_rounded_for_a_terminal():
    """headline (no fast test reached it)."""
    results = pd.DataFrame(
        {"runtime": ["v"], "p50_ms": [3.456], "cold_start_s": [0.12345], "size_mb": [21.126],
         "usd_per_million": [1.23456]}
    ).set_index("runtime")  # fmt: skip
    verify = {"v": {"accuracy": 0.123456, "agreement": 0.987654}}
    assert recommend.headline("v", verify, results) == {
        "variant": "v",
        "accuracy": 0.1235,
        "agreement": 0.9877,
        "p50_ms": 3.46,
        "cold_start_s": 0.123,
        "size_mb": 21.13,
        "usd_million": 1.235,
    }


def test_prefer_cost_reads_the_deploys_own_architecture_door_and_memory():
    """deploy_costs 8, 12 (`!=` for the architecture's or the door's `==`): one price a row, by hand."""
    rows = [
        (runtime, arch, door, memory, price)
        for runtime, base in (("a", 1.0), ("b", 2.0))
        for arch, a in (("x86_64", 0.0), ("arm64", 0.1))
        for door, d in (("function_url", 0.0), ("http_api", 0.01))
        for memory, m in ((1769, 0.0), (3538, 0.001))
        for price in [base + a + d + m]
    ]
    table = pd.DataFrame(rows, columns=["runtime", "architecture", "door", "memory_mb", "usd_per_million"])
    deploy = params.load(ROOT / "params.yaml").deploy
    at = recommend.deploy_costs(
        table, dataclasses.replace(deploy, architecture="arm64", endpoint="function_url", memory_mb=3538)
    )
    assert at.to_dict() == {"a": 1.101, "b": 2.101}
