"""The report stage on the small run: real PNGs, every runtime and the choice named, nothing hidden or NaN,
the confusion CSV dvc plots reads, a summary that fits a terminal and what Lambda bills."""

import json
import re

import pandas as pd
from PIL import Image

from pipeline import report as report_module
from support import RUNTIMES

PLOTS = ["accuracy_vs_size.png", "latency.png", "cold_start.png", "confusion.png", "training.png", "per_class.png"]


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
            rows.setdefault(line.split("|")[1].strip().removesuffix(f" {report_module.MARK}"), line)
    header = [c.strip() for c in rows["runtime / variant"].split("|")[1:-1]]
    size, p50 = header.index("size MiB"), header.index("p50 ms")
    for runtime in RUNTIMES:
        cells = [c.strip() for c in rows[runtime].split("|")[1:-1]]
        assert float(cells[size]) == results.loc[runtime, "size_mb"]  # from the bench table
        assert float(cells[p50]) == results.loc[runtime, "p50_ms"]
    full_int8 = [c.strip() for c in rows["full_int8"].split("|")[1:-1]]
    assert float(full_int8[2]) == verify["full_int8"]["accuracy"]  # test accuracy, from verify
    onnx_int8 = [c.strip() for c in rows["onnx_int8"].split("|")[1:-1]]
    assert float(onnx_int8[2]) == verify["onnx_int8"]["accuracy"]  # ONNX Runtime's too
    assert f"**Recommended: {report_module.MARK} {choice['variant']}**" in report
    assert f"| {choice['variant']} {report_module.MARK} |" in re.sub(" +", " ", report)
    assert "weights: **none**" in report and "estimate" in report


def test_the_report_embeds_what_it_shows_and_prints_no_nan(small_run):
    """Every image report.md embeds is there; report.html is the same page with them inside; the per-class
    table, the gallery and the reasons for the others are in it."""
    folder = small_run / "artifacts/report"
    text = (folder / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(PLOTS + ["cost.png"]) <= set(images) and all((folder / image).is_file() for image in images)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    choice = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())
    assert all(f"- **{v}**: {why}" in text for v, why in choice["not_chosen"].items())
    gallery = [i for i in images if i.startswith("misclassified/")]
    mistakes = pd.read_csv(folder / "misclassified.csv")
    assert 0 < len(gallery) == len(mistakes) <= report_module.GALLERY
    for image in gallery:
        with Image.open(folder / image) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 160
    scores = pd.read_csv(folder / "per_class.csv")
    assert set(scores["model"]) == {"keras", f"{choice['variant']} {report_module.MARK}"}
    page = (folder / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(images) and all(s.startswith("data:image/") for s in sources)


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
    unmarked = (line.replace(f" {report_module.MARK}", "") for line in section.splitlines())  # the choice's rows
    rows = {"/".join(cell.strip() for cell in line.split("|")[1:4]): line for line in unmarked
            if line.startswith("| ") and "|" in line[2:]}  # fmt: skip
    for _, m in costs[costs["memory_mb"] == 1769].iterrows():  # the small run's deploy.memory_mb
        cells = [c.strip() for c in rows[f"{m['runtime']}/{m['architecture']}/{m['door']}"].split("|")[1:-1]]
        assert float(cells[-2]) == m["usd_per_million"] and cells[-1] == "estimate"  # no make tune in the run
        assert f"{m['usd_door']:g}" in cells and f"{m['usd_logs']:g}" in cells
    # Both doors for the recommended variant, in one sentence at the top of the section.
    choice = json.loads((small_run / "artifacts/recommend/recommendation.json").read_text())
    mine = costs[(costs["memory_mb"] == 1769) & (costs["architecture"] == "x86_64")]
    mine = mine[mine["runtime"] == choice["variant"]].set_index("door")["usd_per_million"]
    table = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")]
    starred = {name for name in table if report_module.MARK in name}
    assert starred == {f"{choice['variant']} {report_module.MARK}"}  # its rows and no other
    assert (f"${mine['function_url']:.2f} per million requests behind a function URL, "
            f"${mine['http_api']:.2f} behind an HTTP API") in report  # fmt: skip
    many = handler[(handler["threads"] == handler["threads"].max()) & (handler["photo"] == "phone")]
    assert all(f"{p50:g}" in report for p50 in many["p50_ms"])  # the handler's own p50s, as measured
    with Image.open(small_run / "artifacts/report/cost.png") as img:
        assert img.format == "PNG" and img.width > 300
