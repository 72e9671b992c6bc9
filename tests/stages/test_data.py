import http.server
import json
import shutil
import threading
from functools import partial

import pandas as pd

from support import LABELS, make_dataset, make_project, small_params, stage


def run_data(tmp_path, dataset, **overrides):
    project = make_project(tmp_path / "project", small_params(dataset, **overrides))
    return project, stage("data", project, check=False)


def test_real_dataset_manifest(tmp_path, dataset_dir):
    project, result = run_data(tmp_path, dataset_dir, **{"data.max_per_class": 0, "data.expected_images": 3781})
    assert result.returncode == 0, result.stderr
    manifest = pd.read_csv(project / "data/manifest.csv")
    assert len(manifest) == 3781
    assert manifest["split"].value_counts().to_dict() == {"train": 3068, "validation": 341, "test": 372}
    counts = manifest.groupby(["split", "label"]).size()
    assert counts["test", "shoes"] == 73 and counts["train", "t-shirt"] == 795 and counts["validation", "hat"] == 14
    assert pd.read_csv(project / "data/bad_images.csv").empty
    # The classes are the folder names, sorted: the ten the model's head gets, in this order.
    assert json.loads((project / "data/labels.json").read_text()) == {"labels": list(LABELS), "source": "folders"}


def test_corrupt_images_are_reported_and_left_out(tmp_path):
    dataset = make_dataset(tmp_path / "ds", per_class=2)
    good = (dataset / "train/dress/0.jpg").read_bytes()
    (dataset / "train/dress/truncated.jpg").write_bytes(good[: len(good) // 3])
    (dataset / "test/hat/garbage.jpg").write_bytes(b"this is not a jpeg")
    project, result = run_data(tmp_path, dataset, **{"data.expected_images": 62})
    assert result.returncode == 0, result.stderr
    bad = pd.read_csv(project / "data/bad_images.csv")
    assert sorted(p.split("/")[-1] for p in bad["path"]) == ["garbage.jpg", "truncated.jpg"]
    assert bad["reason"].str.len().min() > 5
    manifest = pd.read_csv(project / "data/manifest.csv")
    assert len(manifest) == 60 and not manifest["path"].isin(bad["path"]).any()


def test_missing_dataset_is_one_clear_message(tmp_path):
    _, result = run_data(tmp_path, tmp_path / "nowhere")
    assert result.returncode == 2
    assert "data set not found" in result.stderr and "data.source: download" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_image_count_is_reported(tmp_path):
    dataset = make_dataset(tmp_path / "ds", per_class=1)
    _, result = run_data(tmp_path, dataset, **{"data.expected_images": 3781})
    assert result.returncode == 2 and "holds 30 images, expected 3781" in result.stderr


def test_download_from_a_local_http_server(tmp_path):
    dataset = make_dataset(tmp_path / "src" / "clothing-dataset-small-master", per_class=1)
    (dataset / "extras").mkdir()  # a folder beside the splits (notes, scripts) leaves them split folders
    (dataset / "extras" / "notes.txt").write_text("not photos")
    shutil.make_archive(str(tmp_path / "www" / "master"), "zip", tmp_path / "src")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/master.zip"
        project, result = run_data(tmp_path, dataset, **{"data.source": "download", "data.url": url})
        assert result.returncode == 0, result.stderr
        assert (project / "data/download/dataset.zip").exists()
        manifest = pd.read_csv(project / "data/manifest.csv")
        assert len(manifest) == 30 and manifest["path"].str.contains("data/download/extracted").all()

        _, missing = run_data(tmp_path / "again", dataset, **{"data.source": "download", "data.url": url + "x"})
        assert missing.returncode == 2 and "404" in missing.stderr and "cannot download" in missing.stderr

        # A folder per class under the archive's top folder (a class named train among them): split here.
        flat = tmp_path / "flat" / "photos-main"
        for k, label in enumerate(("train", "bus", "car")):
            (flat / label).mkdir(parents=True)
            for split in ("train", "validation", "test"):  # 3 photos a class: one for each split
                shutil.copy(dataset / split / LABELS[k] / "0.jpg", flat / label / f"{split}.jpg")
        apple_double = tmp_path / "flat" / "__MACOSX" / "photos-main" / "bus"  # a zip made on a Mac
        apple_double.mkdir(parents=True)
        (apple_double / "._train.jpg").write_bytes(b"\x00\x05\x16\x07")
        shutil.make_archive(str(tmp_path / "www" / "flat"), "zip", tmp_path / "flat")
        flat_url = f"http://127.0.0.1:{server.server_port}/flat.zip"
        project, result = run_data(tmp_path / "flat-run", dataset, **{"data.source": "download", "data.url": flat_url})
        assert result.returncode == 0, result.stderr
        assert "of 3 classes (split here (data.split))" in result.stdout
        assert json.loads((project / "data/labels.json").read_text())["labels"] == ["bus", "car", "train"]
        manifest = pd.read_csv(project / "data/manifest.csv")
        assert manifest.groupby("split").size().to_dict() == {"train": 3, "validation": 3, "test": 3}
    finally:
        server.shutdown()


def test_max_per_class_decodes_only_what_it_keeps(tmp_path):
    """A quick run checks the photos it keeps, not the whole data set: an unreadable photo inside the
    cut is listed and replaced by the next readable one; one past the cut is never opened."""
    dataset = make_dataset(tmp_path / "ds", per_class=3)
    (dataset / "train/dress/00-garbage.jpg").write_bytes(b"not a jpeg, sorts first")
    (dataset / "test/hat/9-garbage.jpg").write_bytes(b"not a jpeg, sorts last")
    project, result = run_data(tmp_path, dataset, **{"data.max_per_class": 2, "data.expected_images": 92})
    assert result.returncode == 0, result.stderr
    bad = pd.read_csv(project / "data/bad_images.csv")
    assert [p.split("/")[-1] for p in bad["path"]] == ["00-garbage.jpg"]
    manifest = pd.read_csv(project / "data/manifest.csv")
    assert manifest.groupby(["split", "label"]).size().eq(2).all() and len(manifest) == 60
    dress = manifest[(manifest["split"] == "train") & (manifest["label"] == "dress")]["path"]
    assert [p.split("/")[-1] for p in dress] == ["0.jpg", "1.jpg"]


def test_max_validation_per_class_keeps_the_first_validation_photos_of_each_class(tmp_path):
    """A quick run's every epoch checks fewer validation photos; the train and test splits keep theirs."""
    dataset = make_dataset(tmp_path / "ds", per_class=4)
    caps = {"data.max_per_class": 3, "data.max_validation_per_class": 2, "data.expected_images": 120}
    project, result = run_data(tmp_path, dataset, **caps)
    assert result.returncode == 0, result.stderr
    manifest = pd.read_csv(project / "data/manifest.csv")
    counts = manifest.groupby(["split", "label"]).size()
    assert (counts["validation"] == 2).all() and (counts["train"] == 3).all() and (counts["test"] == 3).all()
    hats = manifest[(manifest["split"] == "validation") & (manifest["label"] == "hat")]["path"]
    assert [p.split("/")[-1] for p in hats] == ["0.jpg", "1.jpg"]
    # Without max_per_class it caps the validation split alone.
    project, result = run_data(tmp_path / "all", dataset, **{**caps, "data.max_per_class": 0})
    assert result.returncode == 0, result.stderr
    split_sizes = pd.read_csv(project / "data/manifest.csv")["split"].value_counts().to_dict()
    assert split_sizes == {"train": 40, "test": 40, "validation": 20}
