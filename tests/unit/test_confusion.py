"""The report's confusion matrix and per-class scores, checked as matrices against counts made by hand (issue 34:
the report's tests used to check the rows the function returns, so swapped crosstab axes passed)."""

import math

import pandas as pd
import pytest

from pipeline import per_class

# The model's output order, deliberately not sorted; emu has no test photo and is never predicted.
LABELS = ["owl", "cat", "dog", "emu"]
# (actual, predicted): cat 1 right and 2 taken for dogs, dog 3 right, owl 1 taken for a cat.
PAIRS = [("cat", "cat"), ("cat", "dog"), ("cat", "dog"), ("dog", "dog"), ("dog", "dog"), ("dog", "dog"), ("owl", "cat")]


def predictions() -> pd.DataFrame:
    rows = [{"model": "int8", "path": f"{i}.jpg", "label": a, "predicted": p} for i, (a, p) in enumerate(PAIRS)]
    rows.append({"model": "keras", "path": "x.jpg", "label": "owl", "predicted": "owl"})  # another model's row
    return pd.DataFrame(rows)


def test_the_confusion_matrix_has_a_row_per_actual_and_a_column_per_predicted_class_in_label_order():
    # Fails if crosstab's axes are swapped (the matrix transposed), the labels sorted, a class without photos
    # dropped, or another model's rows counted.
    p = predictions()
    matrix = per_class.confusion_matrix(p[p["model"] == "int8"], LABELS)
    assert list(matrix.index) == LABELS and list(matrix.columns) == LABELS
    assert matrix.to_numpy().tolist() == [
        # predicted: owl cat dog emu
        [0, 1, 0, 0],  # actual owl
        [0, 1, 2, 0],  # actual cat
        [0, 0, 3, 0],  # actual dog
        [0, 0, 0, 0],  # actual emu
    ]


def test_per_class_scores_from_the_matrix_by_hand():
    # cat: precision 1/2 (predicted twice: cat, owl), recall 1/3, F1 2*(1/2)(1/3)/(1/2+1/3) = 0.4.
    # dog: precision 3/5, recall 3/3, F1 0.75. owl: never predicted (no precision), recall 0/1, no F1.
    # emu: no photo (no recall), never predicted. Fails on a transposed matrix (precision and recall swap).
    table = per_class.model_scores(predictions(), "int8", LABELS)
    assert table.loc["cat", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.5, 1 / 3, 0.4])
    assert table.loc["dog", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.6, 1.0, 0.75])
    assert math.isnan(table.loc["owl", "precision"]) and table.loc["owl", "recall"] == 0
    assert math.isnan(table.loc["owl", "f1"]) and math.isnan(table.loc["emu", "recall"])
    assert table["support"].tolist() == [1, 3, 3, 0]
