import json

from PIL import Image

from conftest import RUNTIMES

PLOTS = ["accuracy_vs_size.png", "latency.png", "cold_start.png", "confusion.png", "training.png"]


def test_plots_are_real_pngs(small_run):
    for name in PLOTS:
        with Image.open(small_run / "artifacts/report" / name) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200


def test_report_table_names_every_runtime_and_the_choice(small_run):
    report = (small_run / "artifacts/report/report.md").read_text()
    choice = json.loads((small_run / "artifacts/bench/recommendation.json").read_text())
    for runtime in RUNTIMES:
        assert f"| {runtime} " in report
    assert f"**Recommended: {choice['variant']}**" in report
    assert "weights: **none**" in report and "estimate" in report


def test_confusion_csv_for_dvc_plots(small_run):
    lines = (small_run / "artifacts/report/confusion.csv").read_text().splitlines()
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    assert lines[0] == "actual,predicted" and len(lines) - 1 == metrics["test_images"]
