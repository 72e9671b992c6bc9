import json

import pandas as pd
from PIL import Image

from conftest import RUNTIMES

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
