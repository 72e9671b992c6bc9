"""The data stage's layout and split rules on tiny folders of empty or generated files, no data set, no server
(issue 34). Each test names the change to pipeline/data.py (a mutant) it fails on."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import data
from pipeline.cli import UserError
from pipeline.params import Split

SPLIT = Split(validation=0.2, test=0.2, seed=7)


def touch_classes(root, classes, photos=("1.jpg",)):
    """Class folders holding empty photo files (the layout rules list files, they do not decode them)."""
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for photo in photos:
            (root / name / photo).touch()
    return root


def split_set(root, classes=("a", "b")):
    for split in data.SPLITS:
        touch_classes(root / split, classes)
    return root


def test_the_outermost_split_folder_of_an_archive_wins(tmp_path):
    # b/ is shallower than a/nested/ but sorts after it by name, and __MACOSX/ (a Mac's copy, hidden) sorts
    # before both at b's depth. Fails if the depth leaves the sort key (a/nested wins), the sort is reversed, or
    # hidden folders are not left out (__MACOSX wins).
    split_set(tmp_path / "a" / "nested")
    split_set(tmp_path / "b")
    split_set(tmp_path / "__MACOSX")
    assert data.archive_root(tmp_path, "u") == tmp_path / "b"


def test_an_archive_of_class_folders_is_taken_below_its_single_top_folders(tmp_path):
    # GitHub's <repo>-<branch>/ top folder, then a folder per class. Fails if the walk stops at the first
    # folder (`== 1` flipped) or accepts a single class (`< 2`).
    touch_classes(tmp_path / "repo-main" / "photos", ["cat", "dog"])
    assert data.archive_root(tmp_path, "u") == tmp_path / "repo-main" / "photos"
    touch_classes(tmp_path / "one" / "only", ["cat"])
    with pytest.raises(UserError, match="no train/ folder and no class folders inside the archive from u"):
        data.archive_root(tmp_path / "one", "u")


def test_a_download_that_is_not_a_zip_is_one_line_and_removed(tmp_path):
    # The download is cached at download_dir/dataset.zip, so an HTML error page left there stands for one.
    # Fails if the bad archive is kept (it would be "cached" and fail the same way forever) or the
    # BadZipFile escapes as a traceback.
    archive = tmp_path / "dataset.zip"
    archive.write_text("<html>not found</html>")
    with pytest.raises(UserError, match="did not give a zip archive; removed the download"):
        data.fetch("https://example.invalid/ds.zip", tmp_path)
    assert not archive.exists() and not (tmp_path / "extracted").exists()


def test_split_layout_needs_class_folders_in_train(tmp_path):
    # A class named train (a folder of photos) is not a split layout. Fails if either condition is dropped.
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "1.jpg").touch()
    assert not data.split_layout(tmp_path)
    touch_classes(tmp_path / "train", ["a"])
    assert data.split_layout(tmp_path)
    assert not data.split_layout(tmp_path / "missing")


@pytest.mark.parametrize(
    ("validation", "test", "words"),
    [
        (["a"], ["a", "b"], r"validation has classes \['a'\].*\(missing \['b'\]\)"),
        (["a", "b"], ["a", "b", "c"], r"test has classes \['a', 'b', 'c'\].*\(extra \['c'\]\)"),
    ],
)
def test_a_class_in_some_splits_only_is_one_line(tmp_path, validation, test, words):
    # Fails if the missing or the extra check goes, or they are swapped.
    touch_classes(tmp_path / "train", ["a", "b"])
    touch_classes(tmp_path / "validation", validation)
    touch_classes(tmp_path / "test", test)
    p = params_for(tmp_path)
    with pytest.raises(UserError, match=words):
        data.scan(tmp_path, p)


def test_a_split_set_lists_every_split_and_data_classes_may_leave_a_folder_out(tmp_path):
    split_set(tmp_path, ["a", "b", "c"])
    manifest, labels = data.scan(tmp_path, params_for(tmp_path))
    assert labels == ["a", "b", "c"]
    assert list(manifest["split"]) == ["train"] * 3 + ["validation"] * 3 + ["test"] * 3
    manifest, labels = data.scan(tmp_path, params_for(tmp_path, classes=["c", "a"]))  # an extra folder is fine
    assert labels == ["c", "a"] and list(manifest["label"]) == ["c", "a"] * 3


def params_for(root, classes=()):
    return data.params.Data(
        source="local",
        local_dir=str(root),
        url="",
        download_dir="",
        expected_images=0,
        max_per_class=0,
        classes=list(classes),
        split=SPLIT,
    )


@pytest.mark.parametrize(("found", "wanted"), [(["a"], []), (["a", "b"], ["b"]), ([], [])])
def test_fewer_than_two_classes_is_one_line(found, wanted, tmp_path):
    # Fails if the limit becomes `< 1` or `<= 1` is loosened, or the chosen list is not the one checked.
    with pytest.raises(UserError, match=r"class\(es\).*a classifier needs at least 2"):
        data.chosen_classes(found, wanted, tmp_path)


def test_two_classes_are_enough_and_data_classes_fixes_the_order(tmp_path):
    # Fails if the limit becomes `<= 2`, or data.classes is sorted or ignored.
    assert data.chosen_classes(["a", "b"], [], tmp_path) == ["a", "b"]
    assert data.chosen_classes(["a", "b", "c"], ["c", "a"], tmp_path) == ["c", "a"]
    with pytest.raises(UserError, match=r"names \['z'\], which .* has no folder for"):
        data.chosen_classes(["a", "b"], ["a", "z"], tmp_path)


def manifest_of(rows):
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def test_no_readable_photo_left_in_a_split_is_one_line_naming_the_class():
    # Fails if check_classes is skipped for any split or the empty test flips.
    full = [(f"{s}/{c}.jpg", c, s) for s in data.SPLITS for c in ("a", "b")]
    data.check_classes(manifest_of(full), ["a", "b"])  # every class in every split: passes
    for split in data.SPLITS:
        rows = [r for r in full if not (r[2] == split and r[1] == "b")]
        with pytest.raises(UserError, match=rf"no readable {split} photos of class\(es\) \['b'\]"):
            data.check_classes(manifest_of(rows), ["a", "b"])


def test_first_readable_keeps_per_class_readable_photos_and_reports_the_broken_ones(tmp_path):
    # Per split and class: the first two readable photos, the broken one met on the way reported. Fails if the
    # broken photo is kept, the count limit is off by one, or reading goes on past the limit.
    pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    rows = []
    for label in ("a", "b"):
        for name in ("1", "2", "3", "4"):
            path = tmp_path / f"{label}{name}.png"
            if label == "a" and name == "1":
                path.write_bytes(b"not a png")
            else:
                Image.fromarray(pixels).save(path)
            rows.append((str(path), label, "train"))
    kept, bad = data.first_readable(manifest_of(rows), per_class=2)
    names = [p.rsplit("/", 1)[1] for p in kept["path"]]
    assert names == ["a2.png", "a3.png", "b1.png", "b2.png"]
    assert [p.rsplit("/", 1)[1] for p in bad["path"]] == ["a1.png"]
    assert "image" in bad["reason"].iloc[0].lower()  # the decoder's reason, not an empty or "None" one


@pytest.mark.parametrize(("n", "expected"), [(10, (6, 2, 2)), (12, (8, 2, 2)), (13, (7, 3, 3)), (3, (1, 1, 1))])
def test_split_counts_round_each_share_and_keep_one_photo_a_split(n, expected):
    # By hand, shares of 0.2: 10 -> 2 and 2; 12 -> 2.4 rounds to 2; 13 -> 2.6 rounds to 3; 3 -> 0.6 rounds to 1,
    # and at least 1 anyway. Fails if a share is floored, the minimum of one goes, or train is not the rest.
    counts = data.split_counts(n, SPLIT)
    assert (counts["train"], counts["validation"], counts["test"]) == expected
    assert data.split_counts(4, Split(validation=0.1, test=0.1, seed=0)) == {"train": 2, "validation": 1, "test": 1}


def test_too_few_photos_to_split_a_class_is_one_line():
    # 2 photos: one for validation and one for test leave none for training. Fails if the check goes or
    # becomes `< 0`.
    with pytest.raises(UserError, match=r"class 'tiny' has 2 photos: too few"):
        data.split_classes({"tiny": ["x1", "x2"], "big": [f"y{i}" for i in range(9)]}, SPLIT)


def photos(classes, n=20):
    return {c: [f"{c}/{i:02}.jpg" for i in range(n)] for c in classes}


def assignment(frame: pd.DataFrame) -> dict:
    return dict(zip(frame["path"], frame["split"], strict=True))


def test_each_class_is_split_with_its_own_seed_so_dropping_one_leaves_the_others_as_they_were():
    # Fails if one generator is shared across classes (dropping b would shift c's shuffle) or the class name
    # leaves the seed (classes of the same size would all be split alike).
    three = assignment(data.split_classes(photos(["a", "b", "c"]), SPLIT))
    two = assignment(data.split_classes(photos(["a", "c"]), SPLIT))
    assert two == {p: s for p, s in three.items() if not p.startswith("b/")}
    by_class = {c: [three[f"{c}/{i:02}.jpg"] for i in range(20)] for c in "abc"}
    assert len({tuple(v) for v in by_class.values()}) == 3  # each class shuffled differently
    for splits in by_class.values():
        assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (12, 4, 4)


def test_the_split_follows_data_split_seed_and_is_the_same_every_run():
    # Fails if the seed leaves the generator (another seed would split alike) or the split is not repeatable.
    first = assignment(data.split_classes(photos(["a", "b"]), SPLIT))
    assert first == assignment(data.split_classes(photos(["a", "b"]), SPLIT))
    other = assignment(data.split_classes(photos(["a", "b"]), Split(validation=0.2, test=0.2, seed=8)))
    assert other != first


def test_split_rows_come_in_scan_s_order():
    # Splits in train, validation, test order, classes in their given order, paths sorted within.
    frame = data.split_classes(photos(["b", "a"], n=5), Split(validation=0.2, test=0.2, seed=1))
    keys = [(data.SPLITS.index(s), ["b", "a"].index(label), p) for p, label, s in frame.itertuples(index=False)]
    assert keys == sorted(keys)


def test_a_folder_per_class_set_is_split_here_from_its_photos_only(tmp_path):
    # Five photos a class, shares of 0.2: 3 train, 1 validation, 1 test each. Dot files, a Mac's ._ copies, other
    # files and folders named like photos are not photos. Fails if the folder-per-class branch of scan loses its
    # classes, data.classes or split, or images_in keeps what is not a photo.
    names = [f"{i}.jpg" for i in range(5)]
    for label in ("a", "b", "c"):
        touch_classes(tmp_path, [label], names + [".DS_Store", "._0.jpg", ".hidden.jpg", "notes.txt"])
        (tmp_path / label / "folder.jpg").mkdir()
    manifest, labels = data.scan(tmp_path, params_for(tmp_path))
    assert labels == ["a", "b", "c"]
    assert sorted(p.rsplit("/", 1)[1] for p in manifest["path"]) == sorted(names * 3)
    counts = manifest.groupby(["label", "split"]).size().to_dict()
    assert counts == {(c, s): n for c in "abc" for s, n in (("train", 3), ("validation", 1), ("test", 1))}
    manifest, labels = data.scan(tmp_path, params_for(tmp_path, classes=["c", "a"]))
    assert labels == ["c", "a"] and set(manifest["label"]) == {"a", "c"}


def test_three_photos_are_enough_to_split_a_class():
    # One each: train keeps 1. Fails if the minimum becomes 2 train photos (`< 2` or `<= 1`).
    frame = data.split_classes({"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"]}, SPLIT)
    assert sorted(frame["split"]) == sorted(["train", "validation", "test"] * 2)


# Issue 34's second pass on data.py (mutation_2026-12-08.md): each test names the mutants it kills.


def test_an_archive_holding_only_train_is_a_folder_per_class_set_under_it(tmp_path):
    """archive_root 2 (`rglob(None)` also yields the archive's own folder, whose train/ would make it a
    split layout missing validation/ and test/): train/ of class folders alone is taken as the classes' parent."""
    touch_classes(tmp_path / "train", ["a", "b"])
    assert data.archive_root(tmp_path, "u") == tmp_path / "train"


def test_an_empty_class_folder_names_the_suffixes_it_looked_for(tmp_path):
    """images_in 11-14 (the message)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").touch()
    with pytest.raises(UserError) as error:
        data.images_in(tmp_path / "a")
    assert str(error.value) == f"{tmp_path / 'a'} holds no images (.jpeg, .jpg, .png): an empty class"


def test_a_class_data_classes_names_but_no_folder_holds_names_where_it_looked(tmp_path):
    """scan 6 (a folder per class: the data set's folder), 20, 29, 30 (a split set: its train/)."""
    touch_classes(tmp_path / "flat", ["a", "b"], photos=("1.jpg", "2.jpg", "3.jpg"))
    with pytest.raises(UserError) as error:
        data.scan(tmp_path / "flat", params_for(tmp_path / "flat", classes=["a", "z"]))
    assert (
        str(error.value) == f"data.classes names ['z'], which {tmp_path / 'flat'} has no folder for (it has ['a', 'b'])"
    )
    split_set(tmp_path / "split")
    with pytest.raises(UserError) as error:
        data.scan(tmp_path / "split", params_for(tmp_path / "split", classes=["z", "a"]))
    where = tmp_path / "split" / "train"
    assert str(error.value) == f"data.classes names ['z'], which {where} has no folder for (it has ['a', 'b'])"


def test_a_split_set_without_a_split_folder_says_which_and_what_it_needs(tmp_path):
    """scan 35-37 (the message)."""
    touch_classes(tmp_path / "train", ["a", "b"])
    touch_classes(tmp_path / "test", ["a", "b"])
    with pytest.raises(UserError) as error:
        data.scan(tmp_path, params_for(tmp_path))
    assert str(error.value) == (
        f"{tmp_path} has no validation/ folder (a data set with train/ needs train, validation, test)"
    )


def test_a_split_set_s_manifest_lists_each_photo_s_path(tmp_path):
    """scan 53, 54 (the row's path key), 65, 66 (the column's name): the path column is what every later stage
    reads."""
    split_set(tmp_path)
    manifest, _ = data.scan(tmp_path, params_for(tmp_path))
    assert list(manifest.columns) == ["path", "label", "split"]
    assert list(manifest["path"]) == [str(tmp_path / s / c / "1.jpg") for s in data.SPLITS for c in ("a", "b")]


def test_the_unreadable_list_has_its_columns_even_when_empty(tmp_path):
    """first_readable 31, 33 and check_images (no fast test reached it): data/bad_images.csv keeps its header
    with no bad photo, and prepare reads bad["path"] from check_images' answer."""
    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(good)
    broken.write_bytes(b"not a png")
    everything = manifest_of([(str(good), "a", "train"), (str(broken), "a", "train")])
    bad = data.check_images(everything)
    assert bad.to_dict("records") == [
        {"path": str(broken), "reason": "not an image (unrecognised format; accepted: JPEG, PNG, WEBP, GIF, BMP)"}
    ]
    only_good = manifest_of([(str(good), "a", "train")])
    for none in (data.check_images(only_good), data.first_readable(only_good, per_class=1)[1]):
        assert none.empty and list(none.columns) == ["path", "reason"]


def test_a_local_data_set_must_be_a_folder_of_folders(tmp_path):
    """find_root (no fast test reached it): a missing folder, or one without class or split folders, is one line
    saying what to set; one with them is the root."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "1.jpg").touch()
    for where in (tmp_path / "missing", tmp_path / "photos"):
        with pytest.raises(UserError) as error:
            data.find_root(params_for(where))
        assert str(error.value) == (
            f"data set not found at {where} (no train/ folder, no class folders): set data.local_dir to your copy, "
            "or data.source: download to fetch it from data.url"
        )
    touch_classes(tmp_path / "set", ["a", "b"])
    assert data.find_root(params_for(tmp_path / "set")) == tmp_path / "set"


def test_a_download_source_is_fetched_from_data_url_into_data_download_dir(tmp_path, monkeypatch):
    """find_root 2-8: data.source download hands data.url and data.download_dir to fetch (stood in here: the
    download itself is the stage's, tests/stages)."""
    calls = []
    monkeypatch.setattr(data, "fetch", lambda url, folder: calls.append((url, folder)) or tmp_path / "unpacked")
    p = dataclasses.replace(params_for(tmp_path), source="download", url="https://example.com/ds.zip",
                            download_dir="downloads")  # fmt: skip
    assert data.find_root(p) == tmp_path / "unpacked"
    assert calls == [("https://example.com/ds.zip", Path("downloads"))]


def test_unreadable_photos_are_listed_in_scan_s_order_without_a_progress_bar_in_a_log(tmp_path, capsys):
    """first_readable 3, 5, 10 (groups sorted: test/ before train/ in data/bad_images.csv), check_images 8 (a
    progress bar written to a log that is no terminal: tqdm's disable=None leaves it out)."""
    broken = {}
    for split in ("train", "test"):
        broken[split] = tmp_path / f"{split}.png"
        broken[split].write_bytes(b"not a png")
    found = manifest_of([(str(broken["train"]), "a", "train"), (str(broken["test"]), "a", "test")])
    _, bad = data.first_readable(found, per_class=1)
    assert list(bad["path"]) == [str(broken["train"]), str(broken["test"])]
    data.check_images(found)
    assert capsys.readouterr().err == ""
