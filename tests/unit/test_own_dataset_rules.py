"""Another data set's rules, on inputs made in the test: labels beside a loaded model are distinct names and
stay names; an excluded variant is left out of recommend and the report with why; deploy refuses to
replace a live model that has other labels. The run on another data set: tests/stages/test_own_dataset.py."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline import cli, gates, recommend, release, report, sources
from pipeline.deploy import commands, releases, smoke
from pipeline.deploy.errors import LabelsChanged
from pipeline.params import Recommend, Verify
from support import LABELS

# The new classes, each from real photos of clothing classes, in the order data.classes gives (not sorted).
MERGED = {"top": ["t-shirt", "shirt", "longsleeve"], "bottom": ["pants", "shorts", "skirt"]}
MERGED |= {"foot wear": ["shoes"], "head-wear": ["hat"]}
ORDER = list(MERGED)


def test_labels_beside_a_loaded_model_are_distinct_names(tmp_path):
    model = tmp_path / "classifier.h5"
    for labels, message in (
        (["top", "bottom", "top"], "names ['top'] more than once"),
        ("top,bottom", "'labels' must be a list of names"),
        (["top", ""], "'labels' must be a list of names"),
    ):
        model.with_suffix(".json").write_text(json.dumps({"labels": labels}))
        with pytest.raises(cli.UserError, match=re.escape(message)):
            sources.find_labels(SimpleNamespace(labels=[]), model)
    beside = model.with_suffix(".json")
    beside.write_text(json.dumps({"labels": ["top", "bottom"]}))
    assert sources.find_labels(SimpleNamespace(labels=[]), model) == (["top", "bottom"], str(beside))


def test_class_names_that_read_as_numbers_or_missing_values_stay_names(tmp_path, monkeypatch):
    """A class folder named 1, NA or None: the smoke test compares the function's answer with verify's by name."""
    monkeypatch.chdir(tmp_path)
    Path("artifacts/verify").mkdir(parents=True)
    rows = [("a.jpg", "1", "NA"), ("b.jpg", "None", "1"), ("c.jpg", "NA", "None")]
    pd.DataFrame(rows, columns=["path", "label", "predicted"]).assign(model="full_int8").to_csv(
        "artifacts/verify/predictions.csv", index=False
    )
    table = release.read_predictions()
    assert list(table["label"]) == ["1", "None", "NA"] and list(table["predicted"]) == ["NA", "1", "None"]
    Path("artifacts/tflite").mkdir()
    Path("artifacts/tflite/full_int8.json").write_text(json.dumps({"sha256": "s", "labels": ["1"], "input_size": 75}))
    release.write(release.describe("full_int8", ["full_int8"], {}, {}, table))  # as the recommend stage does
    assert smoke.expected_answer("full_int8") == (Path("a.jpg").resolve(), "NA")


SAME = {"keras_only": 0, "variant_only": 0, "accuracy_diff": 0.0, "accuracy_diff_low": 0.0, "accuracy_diff_high": 0.0}
VERIFY = {
    "keras": {"accuracy": 0.8},
    "confidence": 0.95,
    "float32": {"accuracy": 0.8, "agreement": 1.0, **SAME},
    "full_int8": {"accuracy": 0.8, "agreement": 0.945, **SAME},  # a user's model: int8 just under the gate
    "onnx_int8": {"accuracy": 0.79, "agreement": 0.946, **SAME, "keras_only": 2, "accuracy_diff": -0.01,
                  "accuracy_diff_low": -0.03, "accuracy_diff_high": 0.0},
}  # fmt: skip


def gate(on_failure: str) -> Verify:
    return Verify(
        num_threads=1, min_agreement=0.95, max_accuracy_drop=0.02, confidence=0.95, on_gate_failure=on_failure
    )


def test_exclude_leaves_the_failing_variants_out_with_why_and_stop_fails():
    names = ["float32", "full_int8", "onnx_int8"]
    left_out = gates.excluded(VERIFY, names, gate("exclude"))
    assert left_out == {
        "full_int8": "full_int8: top-1 agreement 0.945 < verify.min_agreement 0.95",
        "onnx_int8": "onnx_int8: top-1 agreement 0.946 < verify.min_agreement 0.95",
    }
    metrics = VERIFY | {"excluded": left_out}
    gates.check(metrics, names, gate("exclude"))  # float32 goes on
    assert gates.not_excluded(names, metrics) == ["float32"]
    # The refusal's words, one reason a line (gates check 31: their separator; 26: the "leaves none" note).
    reasons = "\n  ".join(left_out.values())
    with pytest.raises(cli.UserError) as stopped:
        gates.check(VERIFY, names, gate("stop"))
    assert str(stopped.value) == "verification failed:\n  " + reasons
    nothing = VERIFY | {"excluded": gates.excluded(VERIFY, names[1:], gate("exclude"))}
    with pytest.raises(cli.UserError) as none_left:
        gates.check(nothing, names[1:], gate("exclude"))
    assert str(none_left.value) == (
        "verification failed (no variant passes: verify.on_gate_failure exclude leaves none):\n  " + reasons
    )
    assert gates.excluded(VERIFY, names, gate("stop")) == {}


def test_a_variant_excluded_for_two_reasons_keeps_both_in_verify_json():
    """gates excluded 5 (the reasons' separator in verify.json's "excluded")."""
    both = VERIFY | {"onnx_int8": VERIFY["onnx_int8"] | {"accuracy_diff_high": -0.025}}
    assert gates.excluded(both, ["onnx_int8"], gate("exclude")) == {
        "onnx_int8": "onnx_int8: top-1 agreement 0.946 < verify.min_agreement 0.95; onnx_int8: accuracy 0.79 is "
        "0.01 below Keras (0.8) and its 95% interval on the difference [-0.0300, -0.0250] (2 photos only Keras "
        "gets right, 0 only the variant) lies wholly below -verify.max_accuracy_drop 0.02"
    }


def test_recommend_and_the_report_never_take_an_excluded_variant():
    metrics = VERIFY | {"excluded": {"full_int8": "full_int8: top-1 agreement 0.945 < verify.min_agreement 0.95"}}
    results = pd.DataFrame({"runtime": ["float32"], "p50_ms": [10.0]}).set_index("runtime")
    rule = Recommend(
        max_accuracy_drop=1.0,
        min_agreement=0.0,
        prefer="warm_p50",
        bootstrap_resamples=10,
        bootstrap_seed=0,
        stable_share=0.95,
    )  # gates open: only exclusion
    choice = recommend.recommend(results, metrics, ["float32", "full_int8"], rule)
    assert choice["variant"] == "float32" and "rejected: full_int8" in choice["reason"]
    with pytest.raises(cli.UserError, match="excluded at verify: full_int8: top-1 agreement 0.945"):
        recommend.recommend(results, metrics, ["full_int8"], rule)
    assert report.excluded_lines(metrics) == ["excluded at verify: full_int8: top-1 agreement 0.945 < "
                                              "verify.min_agreement 0.95"]  # fmt: skip


def test_deploy_refuses_to_replace_a_live_model_with_other_labels_and_says_which():
    def live(labels):
        text = releases.describe("k" * 20, "c" * 12, "full_int8", 0.8, "aws", "x" * 40 + ".jpg", "top", labels)
        assert len(text) <= 256
        return {"Version": "3", "Description": text}

    commands.guard_labels(live(ORDER), ORDER, force=False)  # the same labels: deploys
    with pytest.raises(LabelsChanged) as e:
        commands.guard_labels(live(ORDER), ["top", "bottom", "footwear", "head-wear"], force=False)
    assert "the live version 3 answers with other labels" in str(e.value)
    assert "removed ['foot wear'], added ['footwear']" in str(e.value) and "deploy --force" in str(e.value)
    with pytest.raises(LabelsChanged, match="the same labels in another order"):
        commands.guard_labels(live(ORDER), sorted(ORDER), force=False)
    commands.guard_labels(live(ORDER), sorted(ORDER), force=True)
    # The clothing set's 10 labels live, with a real photo's 40-character name: the photo is kept (rollback
    # checks the version's own answer), the labels by digest, and a change of them is still refused.
    clothing = json.loads(live(list(LABELS))["Description"])
    assert clothing["photo"] == "x" * 40 + ".jpg" and "labels" not in clothing
    with pytest.raises(cli.UserError, match=re.escape(f"digest {clothing['labels_sha']}) are not this model's")):
        commands.guard_labels(live(list(LABELS)), ORDER, force=False)
    commands.guard_labels(live(list(LABELS)), list(LABELS), force=False)
    # Too many labels to name in 256 characters: the digest still tells a change.
    many = [f"class number {i}" for i in range(40)]
    assert "labels_sha" in live(many)["Description"]
    commands.guard_labels(live(many), many, force=False)
    with pytest.raises(cli.UserError, match="too long to record by name"):
        commands.guard_labels(live(many), many[:-1], force=False)
    # A version published before labels were recorded: nothing to compare.
    old = {"Version": "1", "Description": json.dumps({"by": releases.MARK, "key": "k", "config": "c"})}
    commands.guard_labels(old, ORDER, force=False)
