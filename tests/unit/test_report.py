"""The report's parts on tables made in the test: the cost tables' columns, the confusion matrix and its
per-class scores, the gallery of mistakes, the plots' axes and labels, the HTML page and the terminal
summary. The report of the small run: tests/stages/test_report_stage.py."""

import base64
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import per_class, report, report_html


def test_make_tunes_measurements_replace_the_estimate_where_it_measured():
    estimate = pd.DataFrame(
        {"runtime": ["full_int8"] * 3, "architecture": ["x86_64", "x86_64", "arm64"],
         "memory_mb": [1024, 1769, 1769], "photo": "phone", "latency": "measured", "est_ms": [60.0, 35.0, 35.0],
         "billed_ms": [60, 35, 35], "init_ms": [700.0, 400.0, 400.0], "usd_compute": [1.0, 1.01, 0.81],
         "usd_init": [0.12, 0.12, 0.09], "usd_requests": 0.2, "usd_door": 1.0, "usd_logs": 0.0, "usd_snapstart": 0.0,
         "usd_per_million": [2.32, 2.33, 2.1]}
    )  # fmt: skip
    measured = pd.DataFrame(
        {"memory_mb": [1769, 3008], "architecture": "x86_64", "variant": "full_int8", "runtime": "full_int8",
         "invocations": 5, "duration_p50_ms": [41.2, 30.1], "billed_p50_ms": [42.0, 31.0], "init_ms": [650.0, 500.0],
         "max_memory_used_mb": 150.0, "usd_compute": [1.21, 1.5], "usd_init": [0.19, 0.2], "usd_requests": 0.2,
         "usd_door": 1.0, "usd_logs": 0.0, "usd_snapstart": 0.0, "usd_per_million": [2.6, 2.9]}
    )  # fmt: skip
    table = report.measured_costs(estimate, measured).set_index(["architecture", "memory_mb"])
    assert table.loc[("x86_64", 1769), "source"] == "make tune" and table.loc[("x86_64", 1769), "billed_ms"] == 42
    assert table.loc[("x86_64", 1769), "usd_per_million"] == 2.6
    assert table.loc[("x86_64", 1024), "source"] == "estimate" and table.loc[("arm64", 1769), "billed_ms"] == 35
    assert table.loc[("x86_64", 3008), "source"] == "make tune"  # a size the estimate did not price: added
    assert report.measured_costs(estimate, pd.DataFrame())["source"].eq("estimate").all()


def test_the_cost_tables_leave_the_stated_and_constant_columns_to_cost_csv():
    costs = pd.DataFrame({"runtime": ["a"], "photo": "phone", "body_bytes": 9, "log_bytes": 1, "est_ms": 1.5,
                          "billed_ms": 2, "usd_snapstart": 0, "source": "estimate", "usd_per_million": 1})  # fmt: skip
    assert report.hidden_cost_columns(costs) == ["photo", "body_bytes", "log_bytes", "est_ms", "usd_snapstart"]
    # SnapStart billed on some row: its column says something.
    snapstart = costs.assign(usd_snapstart=0.1)
    assert report.hidden_cost_columns(snapstart) == ["photo", "body_bytes", "log_bytes", "est_ms"]


# The report's own pieces on hand-made inputs: every expectation counted or written by hand here.
ABC = ["a", "b", "c", "d"]  # d: no test photo and never predicted
PAIRS = [("a", "a")] * 3 + [("a", "b")] * 2 + [("b", "b")] + [("c", "a")] + [("c", "c")] * 2 + [("c", "b")]


def predictions(pairs=PAIRS, model="m") -> pd.DataFrame:
    return pd.DataFrame({"path": [f"p{i:02d}.jpg" for i in range(len(pairs))], "label": [t for t, _ in pairs],
                         "model": model, "predicted": [p for _, p in pairs]})  # fmt: skip


def test_the_confusion_matrix_has_a_row_per_actual_class_and_a_column_per_prediction():
    matrix = per_class.confusion_matrix(predictions(), ABC)
    assert matrix.to_numpy().tolist() == [[3, 2, 0, 0], [0, 1, 0, 0], [1, 1, 2, 0], [0, 0, 0, 0]]  # asymmetric
    assert list(matrix.index) == list(matrix.columns) == ABC


def test_precision_recall_and_f1_per_class_match_a_count_by_hand():
    table = predictions()
    scores = per_class.scores(per_class.confusion_matrix(table, ABC))
    for name in ("a", "b", "c"):  # counted from the rows, not from a matrix
        right = sum(1 for t, p in PAIRS if t == p == name)
        precision = right / sum(1 for _, p in PAIRS if p == name)
        recall = right / sum(1 for t, _ in PAIRS if t == name)
        assert scores.loc[name, "precision"] == pytest.approx(precision)
        assert scores.loc[name, "recall"] == pytest.approx(recall)
        assert scores.loc[name, "f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert scores.loc[name, "support"] == sum(1 for t, _ in PAIRS if t == name)
    # By hand: a 3 of 4 called a, 3 of 5 found; b 1 of 4 called b, 1 of 1 found; c 2 of 2, 2 of 4.
    assert scores[["precision", "recall"]].loc[["a", "b", "c"]].to_numpy().tolist() == [
        [0.75, 0.6], [0.25, 1.0], [1.0, 0.5]]  # fmt: skip
    assert scores.loc["d"].isna()[["precision", "recall", "f1"]].all() and scores.loc["d", "support"] == 0
    never = per_class.scores(per_class.confusion_matrix(predictions([("a", "b"), ("b", "b")]), ["a", "b"]))
    assert np.isnan(never.loc["a", "precision"]) and never.loc["a", "recall"] == 0  # a never predicted
    section = "\n".join(report.per_class_section(never, never, "v"))
    assert "n/a (never predicted)" in section and "nan" not in section


def test_the_gallery_takes_the_models_most_confident_mistakes_at_most_two_a_class():
    rows = predictions([("a", "b"), ("a", "c"), ("a", "b"), ("b", "a"), ("c", "c"), ("b", "c")])
    probabilities = {"p_a": [0.1, 0.1, 0.2, 0.5, 0.0, 0.1], "p_b": [0.8, 0.2, 0.7, 0.1, 0.1, 0.2],
                     "p_c": [0.1, 0.7, 0.1, 0.4, 0.9, 0.7]}  # fmt: skip
    rows = rows.assign(**probabilities)
    other = rows.assign(model="keras", predicted=rows["label"])  # another model's rows: all right
    picked = per_class.misclassified(pd.concat([other, rows]), "m", count=10)
    # Wrong: p00 a->b 0.8, p01 a->c 0.7, p02 a->b 0.7, p03 b->a 0.5, p05 b->c 0.7; p04 is right.
    # a has three: the two most confident stay (0.8, then 0.7 by path: p01 before p02).
    assert list(picked["path"]) == ["p00.jpg", "p01.jpg", "p05.jpg", "p03.jpg"]
    assert list(picked["probability"]) == [0.8, 0.7, 0.7, 0.5] and list(picked["p_true"]) == [0.1, 0.1, 0.2, 0.1]
    assert list(per_class.misclassified(pd.concat([other, rows]), "m", count=2)["path"]) == ["p00.jpg", "p01.jpg"]
    assert per_class.misclassified(other, "keras", count=3).empty


def test_thumbnails_are_small_upright_jpegs_and_a_missing_photo_is_named(tmp_path):
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(wide)
    turned = tmp_path / "turned.jpg"  # stored landscape, EXIF says rotate: a phone's portrait photo
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (640, 480), (30, 200, 30)).save(turned, exif=exif)
    out = tmp_path / "gallery"
    out.mkdir()
    (out / "09.jpg").write_bytes(b"an earlier run's")
    mistakes = pd.DataFrame({"path": [str(wide), str(tmp_path / "gone.jpg"), str(turned)]})
    assert per_class.write_thumbnails(mistakes, out, size=160) == ["01.jpg", None, "03.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["01.jpg", "03.jpg"]
    with Image.open(out / "01.jpg") as small, Image.open(out / "03.jpg") as upright:
        assert (small.format, small.size, upright.size) == ("JPEG", (160, 120), (120, 160))
    lines = report.gallery_section(
        pd.DataFrame(
            {
                "path": mistakes["path"],
                "label": ["a", "b", "c"],
                "predicted": ["b", "c", "a"],
                "probability": [0.9, 0.8, 0.7],
                "p_true": [0.05, 0.1, 0.2],
            }
        ),  # fmt: skip
        ["01.jpg", None, "03.jpg"],
        "v",
        columns=2,
    )
    text = "\n".join(lines)
    assert "![a taken for b](misclassified/01.jpg)<br>1. true **a** → predicted **b** (90%; a 5%)" in text
    assert f"n/a (photo not found: `{tmp_path / 'gone.jpg'}`)" in text and text.count("\n| ") == 3  # 2 rows + header


def test_the_accuracy_axis_starts_well_below_the_points():
    # The committed full run: 79.03% to 79.30%, which an axis fitted to the points stretched over the plot.
    assert report.accuracy_axis([0.7903, 0.793, 0.7903]) == (0.70, 0.85)
    low, high = report.accuracy_axis([0.5012, 0.52])
    assert (low, high) == (0.45, 0.55) and high - low >= 0.1  # a 1-photo gap stays a small part of the axis
    assert report.accuracy_axis([0.97, 0.995]) == (0.90, 1.0) and report.accuracy_axis([0.01, 0.03])[0] == 0.0


def test_points_that_sit_together_share_one_label():
    # The committed full run's runtimes: MiB and test accuracy.
    sizes = [80.14, 79.41, 39.76, 20.56, 21.14, 79.39, 20.57]
    accuracies = [0.793, 0.793, 0.793, 0.7903, 0.7903, 0.793, 0.793]
    groups = report.label_groups(sizes, accuracies, 100, 0.15)
    assert sorted(sorted(g) for g in groups) == [[0, 1, 5], [2], [3, 4, 6]]
    assert report.label_groups([10, 90], [0.8, 0.8], 100, 0.15) == [[0], [1]]
    assert report.label_groups([10, 10], [0.7, 0.8], 100, 0.15) == [[0], [1]]  # 10 points apart on a 15-point axis


def test_the_main_table_marks_the_choice_and_says_why_a_cell_is_empty():
    table = pd.DataFrame({"runtime": ["keras", "full_int8", "onnx_int8"], "p50_ms": [38.5, 10.7, 10.3],
                          "handler_cold_start_s": [np.nan, 0.37, 0.55], "ops_outside_delegate": [np.nan, 0.0, np.nan],
                          "accuracy_vs_keras": [None, None, None]})  # fmt: skip
    columns = {"runtime": "runtime", "p50_ms": "p50 ms", "handler_cold_start_s": "handler cold s",
               "ops_outside_delegate": "ops off XNNPACK", "accuracy_vs_keras": "vs Keras"}  # fmt: skip
    text = "\n".join(report.main_table(table, columns, "onnx_int8"))
    assert "nan" not in text and "| onnx_int8 ★ |" in re.sub(" +", " ", text)
    assert text.count("n/a") == 3 + 2 and "vs Keras" not in text  # a column verify wrote nothing for is left out
    assert "- n/a in *handler cold s*: the function never serves Keras" in text


def test_each_variant_not_chosen_is_listed_with_its_reason():
    choice = {"variant": "onnx_int8", "not_chosen": {"full_int8": "accuracy 0.78 is 0.013 below Keras (0.793)",
                                                     "float32": "passes the gate, but its p50_ms is 14"}}  # fmt: skip
    lines = report.not_chosen_lines(choice)
    assert "- **full_int8**: accuracy 0.78 is 0.013 below Keras (0.793)" in lines
    assert "- **float32**: passes the gate, but its p50_ms is 14" in lines
    assert "n/a (recommendation.json has no not_chosen" in report.not_chosen_lines({"variant": "x"})[0]


def test_the_html_page_carries_its_images_inside(tmp_path):
    Image.new("RGB", (4, 3), (1, 2, 3)).save(tmp_path / "plot.png")
    text = "# Title\n\n| a | b |\n|---|---|\n| 1 | ![x](plot.png)<br>caption |\n\n![gone](missing.png)\n"
    page = report_html.page(text, tmp_path, title="t")
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 2 and sources[1] == "missing.png"  # a missing file keeps its name: alt text shows
    kind, data = sources[0].split(",", 1)
    assert kind == "data:image/png;base64" and base64.b64decode(data) == (tmp_path / "plot.png").read_bytes()
    assert "<table>" in page and "<br>caption" in page and "<h1>Title</h1>" in page


def test_the_terminal_summary_stars_the_recommended_row_only():
    table = pd.DataFrame({"runtime": ["keras", "full_int8", "onnx_int8"], "size_mb": [80.1, 21.1, 20.6],
                          "accuracy": [0.79, 0.79, 0.79], "agreement": [1.0, 0.98, 0.98], "p50_ms": [38.5, 10.7, 10.3],
                          "cold_start_s": [7.5, 0.16, 0.36], "peak_rss_mb": [861.7, 149.1, 135.7]})  # fmt: skip
    lines = report.summary(table, {"variant": "onnx_int8"}, {}).splitlines()
    assert [line.split()[:2] for line in lines if report.MARK in line] == [["onnx_int8", report.MARK]]
    assert [line.split()[0] for line in lines[1:-1]] == ["keras", "full_int8", "onnx_int8"]
    assert lines[-1] == "recommended: onnx_int8" and max(len(line) for line in lines) <= 120
