"""make tune's arithmetic on REPORT lines written in the test: the lines parsed, a sweep summarised and priced
exactly, init counted once, the cheapest and the fastest size named, each size's configuration. The sweep
against the Lambda-like proxy: tests/deploy/test_deploy_tune.py."""

import pandas as pd
import pytest

from pipeline.cli import UserError
from pipeline.deploy import tune
from pipeline.params import Cost
from support import ROOT

# The emulator's REPORT line for an environment's first invocation, as it printed it (Init Duration first,
# Max Memory Used = Memory Size: the emulator measures neither), and one in Lambda's own order.
EMULATOR_REPORT = (
    "REPORT RequestId: bc594e04-db6f-4828-bd92-917ef5425bbc\tInit Duration: 0.32 ms\tDuration: 120.62 ms\t"
    "Billed Duration: 121 ms\tMemory Size: 512 MB\tMax Memory Used: 512 MB\t"
)
LAMBDA_REPORT = (
    "REPORT RequestId: 3f1c0a6e-0000-4000-8000-000000000000\tDuration: 31.08 ms\tBilled Duration: 32 ms\t"
    "Memory Size: 1769 MB\tMax Memory Used: 141 MB\t"
)


def test_report_lines_are_parsed_from_a_log_tail():
    tail = 'START RequestId: bc59 Version: $LATEST\n{"status": 200}\nEND RequestId: bc59\n' + EMULATOR_REPORT + "\n"
    first = tune.parse_report(tail)
    assert (first["duration_ms"], first["billed_ms"], first["memory_size_mb"], first["init_ms"]) == (
        120.62, 121.0, 512.0, 0.32
    )  # fmt: skip
    warm = tune.parse_report(LAMBDA_REPORT)
    assert (warm["billed_ms"], warm["max_memory_used_mb"], warm["init_ms"]) == (32.0, 141.0, 0.0)
    with pytest.raises(UserError, match="no REPORT line"):
        tune.parse_report("START RequestId: x\nEND RequestId: x\n")


# The list prices the tune tables below are priced at (cost's params, us-east-1 on 2026-12-02).
LIST_PRICES = Cost(
    memory_mb=[1024], photo="phone", cold_start_share=0.01, mb_per_vcpu=1769, prices_region="us-east-1",
    prices_date="2026-12-02", x86_64_price_per_gb_second=0.0000166667, arm64_price_per_gb_second=0.0000133334,
    price_per_million_requests=0.2, api_price_per_million=1.0, api_price_per_million_past_tier=0.9,
    api_tier_millions=300, api_request_step_kb=512, requests_per_month_millions=10, logs_price_per_gb=0.0,
    snapstart_cache_price_per_gb_second=0.0000015046, snapstart_restore_price_per_gb=0.0001397998, snapstart_versions=2,
)  # fmt: skip


def test_a_sweep_is_summarized_and_priced_exactly():
    """Per size: the warm invocations' p50; init = the first's Init Duration + its billed ms beyond that p50."""
    rows = pd.DataFrame(
        {
            "memory_mb": [1024, 1024, 1024, 2048, 2048, 2048],
            "duration_ms": [300.5, 40.2, 41.7, 280.0, 25.3, 24.1],
            "billed_ms": [301.0, 41.0, 42.0, 280.0, 26.0, 25.0],
            "init_ms": [250.0, 0.0, 0.0, 200.0, 0.0, 0.0],
            "max_memory_used_mb": [140.0, 141.0, 141.0, 150.0, 150.0, 151.0],
        }
    )
    c = LIST_PRICES
    table = tune.summarize(rows, "full_int8", "x86_64", c).set_index("memory_mb")
    assert list(table.columns) == tune.COLUMNS[1:]
    assert (table.loc[1024, "billed_p50_ms"], table.loc[1024, "duration_p50_ms"]) == (41.5, 40.95)
    assert table.loc[1024, "init_ms"] == 250.0 + 301.0 - 41.5
    assert table.loc[2048, "init_ms"] == 200.0 + 280.0 - 25.5 and table.loc[2048, "max_memory_used_mb"] == 151.0
    # 41.5 ms bills as 42 ms at 1 GB; 509.5 ms of init for 1% of requests; $0.20 + $1.00.
    assert table.loc[1024, "usd_compute"] == round(1e6 * 0.042 * 1.0 * 0.0000166667, 4) == 0.7
    assert table.loc[1024, "usd_init"] == round(0.01 * 1e6 * 0.510 * 1.0 * 0.0000166667, 4)
    assert table.loc[1024, "usd_per_million"] == round(0.7000014 + 0.0850002 + 1.2, 4)


def test_the_tune_table_in_git_is_the_header_tune_writes():
    """The report stage reads artifacts/tune/tune.csv (a dvc.yaml dep): git holds its header until make tune runs."""
    assert (ROOT / "artifacts/tune/tune.csv").read_text().splitlines() == [",".join(tune.COLUMNS)]


def test_init_inside_billed_duration_is_counted_once():
    """An image function's REPORT line bills Init inside Billed Duration (ceil(Duration + Init Duration));
    the cold invocation's billed ms beyond the warm p50 is then its whole extra cost, Init not added again."""
    rows = pd.DataFrame(
        {
            "memory_mb": [1024, 1024, 1024],
            "duration_ms": [300.5, 40.2, 41.7],
            "billed_ms": [551.0, 41.0, 42.0],  # 300.5 + 250.0 = 550.5, billed as 551
            "init_ms": [250.0, 0.0, 0.0],
            "max_memory_used_mb": [140.0, 141.0, 141.0],
        }
    )
    c = LIST_PRICES
    table = tune.summarize(rows, "full_int8", "x86_64", c).set_index("memory_mb")
    assert table.loc[1024, "init_ms"] == 551.0 - 41.5
    assert table.loc[1024, "usd_init"] == round(0.01 * 1e6 * 0.510 * 1.0 * 0.0000166667, 4)


def tune_table(rows: list[tuple]) -> pd.DataFrame:
    """A tune.csv's columns that make tune chooses by: (memory_mb, duration_p50_ms, usd_per_million) per size."""
    return pd.DataFrame(rows, columns=["memory_mb", "duration_p50_ms", "usd_per_million"])


def test_make_tune_names_the_cheapest_and_the_fastest_size():
    # Cheapest and fastest read off the rows by eye: 1024 MB costs least, 3008 MB answers soonest, and neither is
    # the first or the last row. Fails if either idxmin becomes idxmax, or the two columns are swapped.
    table = tune_table([(512, 80.0, 2.10), (1024, 41.0, 1.95), (3008, 14.0, 2.40), (2048, 22.0, 2.20)])
    cheapest, fastest = tune.choices(table)
    assert (cheapest["memory_mb"], fastest["memory_mb"]) == (1024, 3008)
    # A tie goes to the first row: the smaller size, listed first.
    cheapest, fastest = tune.choices(tune_table([(512, 30.0, 1.5), (1024, 30.0, 1.5)]))
    assert (cheapest["memory_mb"], fastest["memory_mb"]) == (512, 512)


def test_each_swept_size_gets_its_own_configuration_with_its_threads():
    # One vCPU per 1769 MB (Lambda's documented ratio, cost.mb_per_vcpu): 512 MB and 1769 MB run 1 thread, 3538 MB
    # exactly 2, 5307 MB 3, 10240 MB 5.79 -> 6. Fails if the sweep keeps deploy's own memory size or thread count
    # for every size, or the thread count is not rounded from the size's vCPUs.
    from pipeline import params

    d = params.load(ROOT / "params.yaml").deploy
    sizes = [512, 1769, 3538, 5307, 10240]
    configs = tune.size_configs(d, sizes, 1769)
    assert [c["MemorySize"] for c in configs] == sizes
    assert [c["Environment"]["Variables"]["NUM_THREADS"] for c in configs] == ["1", "1", "2", "3", "6"]
    assert all(c["Timeout"] == d.timeout_s and set(c) == set(tune.VERSIONED) for c in configs)
