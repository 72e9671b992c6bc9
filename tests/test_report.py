import json

import pandas as pd
import pytest
from PIL import Image

from conftest import RUNTIMES
from pipeline import report, variants

PLOTS = ["accuracy_vs_size.png", "latency.png", "cold_start.png", "confusion.png", "training.png"]


def test_plots_are_real_pngs(small_run):
    for name in PLOTS:
        with Image.open(small_run / "artifacts/report" / name) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200


def test_report_table_names_every_runtime_and_the_choice(small_run):
    report = (small_run / "artifacts/report/report.md").read_text()
    choice = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())
    results = pd.read_csv(small_run / "artifacts/bench/results.csv").set_index("runtime")
    verify = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    rows = {}
    for line in report.splitlines():  # the first table: runtimes (the cost table below repeats their names)
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    for runtime in RUNTIMES:
        cells = [c.strip() for c in rows[runtime].split("|")[1:-1]]
        assert float(cells[1]) == results.loc[runtime, "size_mb"]  # size MiB, from the bench table
        assert float(cells[4]) == results.loc[runtime, "p50_ms"]  # p50 ms
    full_int8 = [c.strip() for c in rows["litert_full_int8"].split("|")[1:-1]]
    assert float(full_int8[2]) == verify["full_int8"]["accuracy"]  # test accuracy, from verify
    onnx_int8 = [c.strip() for c in rows["onnxruntime_int8"].split("|")[1:-1]]
    assert float(onnx_int8[2]) == verify["onnx_int8"]["accuracy"]  # ONNX Runtime's too
    assert f"**Recommended: {choice['variant']}**" in report
    assert "weights: **none**" in report and "estimate" in report


def test_confusion_csv_for_dvc_plots(small_run):
    lines = (small_run / "artifacts/report/confusion.csv").read_text().splitlines()
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    assert lines[0] == "actual,predicted" and len(lines) - 1 == metrics["test_images"]


def test_terminal_summary_fits_120_columns(small_run):
    summary = (small_run / "artifacts/report/summary.txt").read_text().splitlines()
    assert max(len(line) for line in summary) <= 120
    assert summary[0].split()[:3] == ["runtime", "/", "variant"] and summary[-1].startswith("recommended: ")
    assert {line.split()[0] for line in summary[1:-1]} == set(RUNTIMES)


def test_the_report_says_what_lambda_bills_and_where_each_dollar_goes(small_run):
    report = (small_run / "artifacts/report/report.md").read_text()
    costs = pd.read_csv(small_run / "artifacts/recommend/cost.csv")
    handler = pd.read_csv(small_run / "artifacts/bench/handler.csv")
    assert "## What Lambda bills" in report and "handler p50 ms, phone photo" in report
    assert "us-east-1" in report and "x86's latency" in report
    section = report[report.index("### At the deploy's memory size") : report.index("### Every memory size")]
    rows = {"/".join(cell.strip() for cell in line.split("|")[1:4]): line for line in section.splitlines()
            if line.startswith("| ") and "|" in line[2:]}  # fmt: skip
    for _, m in costs[costs["memory_mb"] == 1769].iterrows():  # the small run's deploy.memory_mb
        cells = [c.strip() for c in rows[f"{m['runtime']}/{m['architecture']}/{m['door']}"].split("|")[1:-1]]
        assert float(cells[-2]) == m["usd_per_million"] and cells[-1] == "estimate"  # no make tune in the run
        assert f"{m['usd_door']:g}" in cells and f"{m['usd_logs']:g}" in cells
    # Both doors for the recommended variant, in one sentence at the top of the section.
    choice = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())
    mine = costs[(costs["memory_mb"] == 1769) & (costs["architecture"] == "x86_64")]
    mine = mine[mine["runtime"] == variants.bench_row(choice["variant"])].set_index("door")["usd_per_million"]
    assert (f"${mine['function_url']:.2f} per million requests behind a function URL, "
            f"${mine['http_api']:.2f} behind an HTTP API") in report  # fmt: skip
    many = handler[(handler["threads"] == handler["threads"].max()) & (handler["photo"] == "phone")]
    assert all(f"{p50:g}" in report for p50 in many["p50_ms"])  # the handler's own p50s, as measured
    with Image.open(small_run / "artifacts/report/cost.png") as img:
        assert img.format == "PNG" and img.width > 300


@pytest.mark.fast
def test_make_tunes_measurements_replace_the_estimate_where_it_measured():
    estimate = pd.DataFrame(
        {"runtime": ["litert_full_int8"] * 3, "architecture": ["x86_64", "x86_64", "arm64"],
         "memory_mb": [1024, 1769, 1769], "photo": "phone", "latency": "measured", "est_ms": [60.0, 35.0, 35.0],
         "billed_ms": [60, 35, 35], "init_ms": [700.0, 400.0, 400.0], "usd_compute": [1.0, 1.01, 0.81],
         "usd_init": [0.12, 0.12, 0.09], "usd_requests": 0.2, "usd_door": 1.0, "usd_logs": 0.0, "usd_per_million": [2.32, 2.33, 2.1]}
    )  # fmt: skip
    measured = pd.DataFrame(
        {"memory_mb": [1769, 3008], "architecture": "x86_64", "variant": "full_int8", "runtime": "litert_full_int8",
         "invocations": 5, "duration_p50_ms": [41.2, 30.1], "billed_p50_ms": [42.0, 31.0], "init_ms": [650.0, 500.0],
         "max_memory_used_mb": 150.0, "usd_compute": [1.21, 1.5], "usd_init": [0.19, 0.2], "usd_requests": 0.2,
         "usd_door": 1.0, "usd_logs": 0.0, "usd_per_million": [2.6, 2.9]}
    )  # fmt: skip
    table = report.measured_costs(estimate, measured).set_index(["architecture", "memory_mb"])
    assert table.loc[("x86_64", 1769), "source"] == "make tune" and table.loc[("x86_64", 1769), "billed_ms"] == 42
    assert table.loc[("x86_64", 1769), "usd_per_million"] == 2.6
    assert table.loc[("x86_64", 1024), "source"] == "estimate" and table.loc[("arm64", 1769), "billed_ms"] == 35
    assert table.loc[("x86_64", 3008), "source"] == "make tune"  # a size the estimate did not price: added
    assert report.measured_costs(estimate, pd.DataFrame())["source"].eq("estimate").all()
