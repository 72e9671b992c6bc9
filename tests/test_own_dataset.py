"""Another data set than the clothing one: 4 classes merged from the real photos (imbalanced, names with a
space and a hyphen, in an order data.classes fixes) through data -> train -> convert -> verify -> the
function; the one-folder-per-class layout split by the data stage; a 4-output model loaded with and
without its labels; excluded variants and changed labels, as the stages and deploy decide on them."""

import base64
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import LABELS, make_project, run, small_params, stage
from pipeline import cli, dataset, gates, recommend, release, report, sources
from pipeline.deploy import commands, releases, smoke
from pipeline.deploy.errors import LabelsChanged
from pipeline.params import Recommend, Verify

# The new classes, each from real photos of clothing classes, in the order data.classes gives (not sorted).
MERGED = {"top": ["t-shirt", "shirt", "longsleeve"], "bottom": ["pants", "shorts", "skirt"]}
MERGED |= {"foot wear": ["shoes"], "head-wear": ["hat"]}
ORDER = list(MERGED)
# Photos per class and split: imbalanced, as users' data sets are.
COUNTS = {
    "train": {"top": 16, "bottom": 12, "foot wear": 8, "head-wear": 4},
    "validation": {"top": 4, "bottom": 3, "foot wear": 3, "head-wear": 2},
    "test": {"top": 6, "bottom": 4, "foot wear": 4, "head-wear": 3},
}


def link_photos(dest: Path, sources: list[Path], n: int) -> None:
    """n real photos taken in turn from the source folders (first by name), linked into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    photos = [sorted(folder.glob("*.jpg")) for folder in sources]
    picked = [p for group in zip(*photos, strict=False) for p in group][:n]
    for photo in picked:
        (dest / f"{photo.parent.name}-{photo.name}").symlink_to(photo)


def merged_dataset(root: Path, dataset_dir: Path) -> Path:
    for split, counts in COUNTS.items():
        for label, n in counts.items():
            link_photos(root / split / label, [dataset_dir / split / c for c in MERGED[label]], n)
    return root


def own_params(dataset: Path, **overrides) -> dict:
    """Tiny: 71 px, one epoch, two variants; the point is where the labels go, not accuracy."""
    small = {
        "data.max_per_class": 0,
        "data.classes": ORDER,
        "train.scratch.input_size": 71,
        "train.scratch.epochs": 1,
        "convert.variants": ["float32", "full_int8"],
        "convert.representative_images": 8,
    }
    return small_params(dataset, **small | overrides)


# Every stage in one process (TensorFlow imported once): the 4-class run, then the runs that load its model.
STAGES = """
import json, os, sys
from pipeline import cli, convert, data, train, verify
out = {}
for name, folder, stages in json.loads(sys.argv[1]):
    os.chdir(folder)
    try:
        for stage in stages:
            {"data": data, "train": train, "convert": convert, "verify": verify}[stage].main()
        out[name] = None
    except cli.UserError as e:
        out[name] = str(e)
print("RESULT " + json.dumps(out))
"""


# The 4-class run trains its own model (~115 s of CPU): its four tests are marked heavy (make test-heavy,
# which .ci/run runs after make test); the rules of a folder per class stay in make test as unit tests.
@pytest.fixture(scope="module")
def own_run(tmp_path_factory, dataset_dir):
    """The 4-class run (data, train, convert, verify) and three mode-load runs of its model: labels from
    train.labels, labels from a JSON beside the file, and none on the 10-class data set (an error)."""
    tmp = tmp_path_factory.mktemp("own")
    dataset = merged_dataset(tmp / "dataset", dataset_dir)
    project = make_project(tmp / "run", own_params(dataset))
    model = project / "artifacts/model/model.keras"
    load = {"train.mode": "load", "train.load_from": str(model), "train.min_load_accuracy": 0.0}
    # The data set's own order is sorted (data.classes []): the model's order must come from its labels.
    given = make_project(tmp / "given", own_params(dataset, **load | {"data.classes": [], "train.labels": ORDER}))
    beside = tmp / "mine" / "classifier.keras"
    with_file = make_project(
        tmp / "with-file", own_params(dataset, **load | {"data.classes": [], "train.load_from": str(beside)})
    )
    ten = make_project(tmp / "ten", small_params(dataset_dir, **load, **{"data.max_per_class": 1, "train.labels": []}))
    beside.parent.mkdir()
    beside.symlink_to(model)  # the run below makes it, before the loads that read it
    beside.with_suffix(".json").write_text(json.dumps({"labels": ORDER}))
    jobs = [["run", str(project), ["data", "train", "convert", "verify"]]]
    jobs += [[name, str(p), ["data", "train"]] for name, p in (("given", given), ("file", with_file), ("ten", ten))]
    result = run([sys.executable, "-c", STAGES, json.dumps(jobs)], project)  # its code, on PYTHONPATH
    outcome = json.loads(result.stdout.rsplit("RESULT ", 1)[1])
    return {"project": project, "given": given, "file": with_file, "outcome": outcome}


@pytest.mark.slow
@pytest.mark.heavy
def test_the_labels_come_from_the_data_and_travel_with_the_model(own_run):
    project = own_run["project"]
    assert own_run["outcome"]["run"] is None
    assert json.loads((project / "data/labels.json").read_text()) == {"labels": ORDER, "source": "data.classes"}
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["labels"] == ORDER and info["input_size"] == 71
    for variant, path in (("float32", "tflite/float32"), ("full_int8", "tflite/full_int8")):
        meta = json.loads((project / f"artifacts/{path}.json").read_text())
        assert meta["labels"] == ORDER and meta["variant"] == variant and meta["input_size"] == 71
    predictions = pd.read_csv(project / "artifacts/verify/predictions.csv")
    assert [c for c in predictions if c.startswith("p_")] == [f"p_{label}" for label in ORDER]
    assert set(predictions["label"]) == set(ORDER) and set(predictions["predicted"]) <= set(ORDER)
    assert len(predictions[predictions["model"] == "keras"]) == sum(COUNTS["test"].values())
    per_class = pd.read_csv(project / "artifacts/verify/per_class.csv")
    assert list(per_class["class"]) == ORDER and list(per_class.columns) == ["class", "keras", "float32", "full_int8"]


@pytest.mark.slow
@pytest.mark.heavy
def test_the_function_answers_with_the_model_s_labels(own_run, monkeypatch, capsys):
    from serving import handler

    project = own_run["project"]
    predictions = pd.read_csv(project / "artifacts/verify/predictions.csv")
    verified = predictions[predictions["model"] == "full_int8"].iloc[0]
    monkeypatch.setattr(handler, "MODEL_PATH", project / "artifacts/tflite/full_int8.tflite")
    handler.model.cache_clear()
    try:
        answer = handler.lambda_handler({"image": base64.b64encode(Path(verified["path"]).read_bytes()).decode()})
    finally:
        handler.model.cache_clear()
    assert sorted(p["label"] for p in answer["predictions"]) == sorted(ORDER)
    assert answer["top"] == verified["predicted"]  # verify's answer, by name
    for p in answer["predictions"]:
        assert p["probability"] == pytest.approx(verified[f"p_{p['label']}"], abs=1e-5)
    assert set(answer) == {"top", "probability", "predictions", "model", "inference_ms"}
    assert answer["model"]["variant"] == "full_int8" and "labels" not in answer["model"]

    # Without its metadata a model has no labels: the function's own fault, a 500 that says why in the log.
    bare = Path(str(project / "bare.tflite"))
    bare.write_bytes((project / "artifacts/tflite/full_int8.tflite").read_bytes())
    monkeypatch.setattr(handler, "MODEL_PATH", bare)
    handler.model.cache_clear()
    try:
        failed = handler.lambda_handler({"image": base64.b64encode(Path(verified["path"]).read_bytes()).decode()})
    finally:
        handler.model.cache_clear()
    assert failed["statusCode"] == 500
    log = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "bare.json not found" in log["error"]


@pytest.mark.slow
@pytest.mark.heavy
def test_the_report_s_confusion_matrix_has_the_new_classes(own_run, monkeypatch):
    project = own_run["project"]
    monkeypatch.chdir(project)
    labels = dataset.model_labels()  # where report.main takes them: the model's info.json
    assert labels == ORDER
    predictions = dataset.read_labelled("artifacts/verify/predictions.csv")
    rows = report.plot_confusion(predictions, "full_int8", labels)
    assert set(rows["actual"]) == set(ORDER) and len(rows) == sum(COUNTS["test"].values())
    assert Path("artifacts/report/confusion.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.heavy
def test_a_loaded_model_takes_its_labels_from_train_labels_or_the_file_beside_it(own_run):
    outcome = own_run["outcome"]
    assert outcome["given"] is None and outcome["file"] is None
    given = json.loads((own_run["given"] / "artifacts/model/info.json").read_text())
    assert given["labels"] == ORDER and given["labels_from"] == "train.labels"
    # The same model on the same validation photos, whose data set lists the classes in another order:
    # matched by name, it scores exactly what it scored when it was trained.
    trained = json.loads((own_run["project"] / "artifacts/model/info.json").read_text())
    assert given["val_accuracy"] == trained["val_accuracy"]
    # Its data set is in sorted order, the model's is not: the model's order wins, labels matched by name.
    assert json.loads((own_run["given"] / "data/labels.json").read_text())["labels"] == sorted(ORDER)
    beside = json.loads((own_run["file"] / "artifacts/model/info.json").read_text())
    assert beside["labels"] == ORDER and beside["labels_from"].endswith("mine/classifier.json")
    # On the 10-class data set, without labels: one line naming both counts.
    message = outcome["ten"]
    assert "\n" not in message and "outputs 4 classes, but the labels" in message and "are 10" in message
    assert "train.labels" in message


def split_params(tmp_path, dataset: Path, **overrides) -> Path:
    return make_project(tmp_path, small_params(dataset, **{"data.max_per_class": 0} | overrides))


def test_a_folder_per_class_is_split_deterministically_and_stratified(tmp_path, dataset_dir):
    """No train/validation/test folders: the data stage splits each class by data.split (seeded)."""
    dataset = tmp_path / "flat"
    sizes = {"outer wear": 20, "dress": 11, "hat": 3}
    for label, n in sizes.items():
        link_photos(dataset / label, [dataset_dir / "train" / {"outer wear": "outwear"}.get(label, label)], n)
    manifests = []
    for name in ("once", "again"):
        project = split_params(tmp_path / name, dataset)
        result = stage("data", project)
        assert "of 3 classes (split here (data.split))" in result.stdout
        manifests.append((project / "data/manifest.csv").read_text())
    assert manifests[0] == manifests[1]
    manifest = pd.read_csv(tmp_path / "once/data/manifest.csv")
    counts = manifest.groupby(["label", "split"]).size().unstack().to_dict("index")
    # 10% each, rounded, at least one photo: 20 -> 2 + 2, 11 -> 1.1 -> 1, 3 -> 0.3 -> 1.
    assert counts == {
        "outer wear": {"train": 16, "validation": 2, "test": 2},
        "dress": {"train": 9, "validation": 1, "test": 1},
        "hat": {"train": 1, "validation": 1, "test": 1},
    }
    assert manifest["path"].is_unique and len(manifest) == sum(sizes.values())
    assert json.loads((tmp_path / "once/data/labels.json").read_text())["labels"] == ["dress", "hat", "outer wear"]

    seven = {"data.split": {"validation": 0.1, "test": 0.1, "seed": 7}}
    other = split_params(tmp_path / "other-seed", dataset, **seven)
    stage("data", other)
    assert (other / "data/manifest.csv").read_text() != manifests[0]

    (dataset / "hat" / sorted(os.listdir(dataset / "hat"))[0]).unlink()
    result = stage("data", split_params(tmp_path / "too-few", dataset), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "class 'hat' has 2 photos: too few to split into train, validation and test" in result.stderr


def test_a_class_missing_from_a_split_or_empty_is_one_line(tmp_path, dataset_dir):
    dataset = merged_dataset(tmp_path / "dataset", dataset_dir)
    for label in os.listdir(dataset / "test" / "head-wear"):
        (dataset / "test" / "head-wear" / label).unlink()
    result = stage("data", split_params(tmp_path / "empty", dataset), check=False)
    assert result.returncode == 2 and "test/head-wear holds no images" in result.stderr
    (dataset / "test" / "head-wear").rmdir()
    result = stage("data", split_params(tmp_path / "missing", dataset), check=False)
    assert result.returncode == 2 and "every split must hold the same classes (missing ['head-wear'])" in result.stderr
    unknown = split_params(tmp_path / "unknown", dataset, **{"data.classes": ["top", "hats"]})
    result = stage("data", unknown, check=False)
    assert result.returncode == 2 and "data.classes names ['hats']" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_classes_keeps_a_subset_in_its_order_and_leaves_the_other_folders_out(tmp_path, dataset_dir):
    photos = merged_dataset(tmp_path / "dataset", dataset_dir)
    project = split_params(tmp_path / "subset", photos, **{"data.classes": ["head-wear", "top"]})
    stage("data", project)
    assert json.loads((project / "data/labels.json").read_text())["labels"] == ["head-wear", "top"]
    manifest = dataset.read_manifest(str(project / "data/manifest.csv"))
    counts = manifest.groupby(["split", "label"]).size().to_dict()
    assert counts == {(split, label): COUNTS[split][label] for split in COUNTS for label in ("head-wear", "top")}


@pytest.mark.fast
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


@pytest.mark.fast
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


@pytest.mark.fast
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
    with pytest.raises(cli.UserError, match="verification failed:"):
        gates.check(VERIFY, names, gate("stop"))
    nothing = VERIFY | {"excluded": gates.excluded(VERIFY, names[1:], gate("exclude"))}
    with pytest.raises(cli.UserError, match="no variant passes"):
        gates.check(nothing, names[1:], gate("exclude"))
    assert gates.excluded(VERIFY, names, gate("stop")) == {}


@pytest.mark.fast
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


@pytest.mark.fast
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
