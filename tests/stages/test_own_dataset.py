"""Another data set than the clothing one: 4 classes merged from the real photos (imbalanced, names with a
space and a hyphen, in an order data.classes fixes) through data -> train -> convert -> verify -> the
function; the one-folder-per-class layout split by the data stage; a 4-output model loaded with and
without its labels."""

import base64
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import dataset, report
from support import make_project, run, small_params, stage

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
