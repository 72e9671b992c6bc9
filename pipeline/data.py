"""Stage data: find the image-folder data set (local copy or download), check it, write the manifest and
the classes (from the folder names, or data.classes), splitting a data set that has no split folders."""

import tempfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import cli, files, params, paths
from serving.images import ImageError, load_image

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def fetch(url: str, download_dir: Path) -> Path:
    """Download and unpack the data set's zip once; return the folder holding the data set."""
    extracted = download_dir / "extracted"
    if not extracted.exists():
        archive = files.download(url, download_dir / "dataset.zip", timeout=60)
        tmp = Path(tempfile.mkdtemp(prefix=".extract.", dir=download_dir))
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile:
            archive.unlink()
            raise cli.UserError(f"{url} did not give a zip archive; removed the download") from None
        tmp.rename(extracted)
    return archive_root(extracted, url)


def archive_root(extracted: Path, url: str) -> Path:
    """The data set inside an unpacked archive: the folder that holds the split folders, else (a folder
    per class) the first folder that holds more than one folder, under the archive's top folder."""
    folders = [d for d in extracted.rglob("*") if d.is_dir() and not any(map(hidden, d.relative_to(extracted).parts))]
    splits = sorted((d for d in folders if split_layout(d)), key=lambda d: (len(d.parts), d))  # the outermost
    if splits:
        return splits[0]
    root = extracted
    while len(inside := class_folders(root)) == 1:  # GitHub's archives: everything under <repo>-<branch>/
        root = root / inside[0]
    if len(inside) < 2:
        raise cli.UserError(f"no train/ folder and no class folders inside the archive from {url}")
    return root


def split_layout(root: Path) -> bool:
    """train/ (with validation/ and test/) holds class folders, rather than one folder per class (a
    class may be named train: it holds photos)."""
    return (root / "train").is_dir() and bool(class_folders(root / "train"))


def hidden(name: str) -> bool:
    """Not the data set's: dot folders and files, and the __MACOSX/ copies (._* files) of a zip made on a Mac."""
    return name.startswith(".") or name == "__MACOSX"


def find_root(p: params.Data) -> Path:
    if p.source == "download":
        return fetch(p.url, Path(p.download_dir))
    root = Path(p.local_dir)
    if not root.is_dir() or not class_folders(root):
        raise cli.UserError(
            f"data set not found at {root} (no train/ folder, no class folders): set data.local_dir to your copy, "
            "or data.source: download to fetch it from data.url"
        )
    return root


def class_folders(folder: Path) -> list[str]:
    """The class names under folder, sorted as Keras' image_dataset_from_directory sorts them."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not hidden(p.name))


def images_in(folder: Path) -> list[str]:
    found = [
        str(f)
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not hidden(f.name)
    ]
    if not found:
        raise cli.UserError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): an empty class")
    return found


def chosen_classes(found: list[str], wanted: list, where: Path) -> list[str]:
    """The classes in the model's output order: every folder (sorted), or data.classes as given."""
    missing = [c for c in wanted if c not in found]
    if missing:
        raise cli.UserError(f"data.classes names {missing}, which {where} has no folder for (it has {found})")
    chosen = list(wanted) or found
    if len(chosen) < 2:
        raise cli.UserError(f"{where}: {len(chosen)} class(es) {chosen}; a classifier needs at least 2")
    return chosen


def scan(root: Path, p: params.Data) -> tuple[pd.DataFrame, list[str]]:
    """Every image file of the chosen classes, with its split, and the classes in order. A data set of
    train/, validation/ and test/ holds the same class folders in each; any other is a folder per
    class, split here (split_classes)."""
    if not split_layout(root):
        labels = chosen_classes(class_folders(root), p.classes, root)
        return split_classes({label: images_in(root / label) for label in labels}, p.split), labels
    labels = chosen_classes(class_folders(root / "train"), p.classes, root / "train")
    rows = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise cli.UserError(f"{root} has no {split}/ folder (a data set with train/ needs {', '.join(SPLITS)})")
        folders = class_folders(split_dir)
        missing = [c for c in labels if c not in folders]
        extra = [] if p.classes else [c for c in folders if c not in labels]
        if missing or extra:
            raise cli.UserError(
                f"{split_dir} has classes {folders}, train/ has {labels}: every split must hold the same classes"
                + (f" (missing {missing})" if missing else f" (extra {extra})")
            )
        rows += [{"path": f, "label": label, "split": split} for label in labels for f in images_in(split_dir / label)]
    return pd.DataFrame(rows, columns=["path", "label", "split"]), labels


def split_counts(n: int, s: params.Split) -> dict:
    """Photos of one class per split: each share rounded, at least one photo in every split."""
    validation, test = max(1, round(n * s.validation)), max(1, round(n * s.test))
    return {"train": n - validation - test, "validation": validation, "test": test}


def split_classes(photos: dict, s: params.Split) -> pd.DataFrame:
    """Stratified and deterministic: each class's photos shuffled by a generator seeded with data.split.seed
    and the class name (so adding or dropping a class leaves the others' splits as they were)."""
    rows = []
    for label, paths_ in photos.items():
        counts = split_counts(len(paths_), s)
        if counts["train"] < 1:
            raise cli.UserError(
                f"class {label!r} has {len(paths_)} photos: too few to split into train, validation and test "
                f"(data.split: validation {s.validation}, test {s.test}; at least 3 photos a class)"
            )
        order = np.random.default_rng([s.seed, zlib.crc32(label.encode())]).permutation(len(paths_))
        bounds = np.cumsum([counts["test"], counts["validation"]])
        for rank, i in enumerate(order):
            split = "test" if rank < bounds[0] else "validation" if rank < bounds[1] else "train"
            rows.append({"path": paths_[i], "label": label, "split": split})
    labels = list(photos)
    rows.sort(key=lambda r: (SPLITS.index(r["split"]), labels.index(r["label"]), r["path"]))  # as scan lists them
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def unreadable(path: str) -> str:
    """Why an image cannot be used ("" if it decodes)."""
    try:
        load_image(path, 32)
        return ""
    except ImageError as e:
        return str(e)


def check_images(manifest: pd.DataFrame) -> pd.DataFrame:
    """Decode every image; return the unreadable ones with the reason."""
    photos = tqdm(manifest["path"], desc="check images", unit="img", disable=None)
    bad = [{"path": path, "reason": reason} for path in photos if (reason := unreadable(path))]
    return pd.DataFrame(bad, columns=["path", "reason"])


def first_readable(found: pd.DataFrame, per_class: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first per_class readable images of each split and class, and the unreadable ones met on the
    way: only what can be kept is decoded, so a quick run stays quick."""
    kept, bad = [], []
    for _, group in found.groupby(["split", "label"], sort=False):
        readable = 0
        for path in group["path"]:
            if readable == per_class:
                break
            if reason := unreadable(path):
                bad.append({"path": path, "reason": reason})
            else:
                kept.append(path)
                readable += 1
    return found[found["path"].isin(kept)], pd.DataFrame(bad, columns=["path", "reason"])


def first_of_split(manifest: pd.DataFrame, split: str, per_class: int) -> pd.DataFrame:
    """The manifest with only the first per_class photos of each class in one split, the others whole."""
    in_split = manifest["split"] == split
    kept = manifest[in_split].groupby("label", sort=False).head(per_class)
    return manifest[~in_split | manifest.index.isin(kept.index)]


def check_classes(manifest: pd.DataFrame, labels: list[str]) -> None:
    """After unreadable photos are left out, every class must still have photos in every split."""
    counts = Counter(zip(manifest["split"], manifest["label"], strict=True))
    for split in SPLITS:
        empty = [label for label in labels if not counts[split, label]]
        if empty:
            raise cli.UserError(f"no readable {split} photos of class(es) {empty} (data/bad_images.csv says why)")


def prepare(p: params.Data) -> dict:
    root = find_root(p)
    found, labels = scan(root, p)
    if p.expected_images and len(found) != p.expected_images:
        raise cli.UserError(
            f"{root} holds {len(found)} images, expected {p.expected_images} "
            "(set data.expected_images: 0 to accept any count)"
        )
    if p.max_per_class:
        manifest, bad = first_readable(found, p.max_per_class)
    else:
        bad = check_images(found)
        manifest = found[~found["path"].isin(bad["path"])]
    if p.max_validation_per_class:
        manifest = first_of_split(manifest, "validation", p.max_validation_per_class)
    with files.atomic_path(paths.BAD_IMAGES) as tmp:
        bad.to_csv(tmp, index=False)
    check_classes(manifest, labels)
    with files.atomic_path(paths.MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)
    # The classes in the model's output order: train builds its head from them, and they travel on with the model.
    files.write_json(paths.LABELS, {"labels": labels, "source": "data.classes" if p.classes else "folders"})
    split = manifest["split"].value_counts()
    summary = {
        "root": str(root),
        "layout": "split folders" if split_layout(root) else "split here (data.split)",
        "classes": len(labels),
        "images_found": len(found),
        "bad_images": len(bad),
        "images": len(manifest),
        "splits": {s: int(split.get(s, 0)) for s in SPLITS},  # per class: the manifest
    }
    files.write_json(paths.DATA_SUMMARY, summary)
    return summary


def main() -> None:
    p = params.load()
    summary = prepare(p.data)
    print(
        f"manifest: {summary['images']} images {summary['splits']} of {summary['classes']} classes "
        f"({summary['layout']}); {summary['bad_images']} unreadable (listed in {paths.BAD_IMAGES})"
    )


if __name__ == "__main__":
    cli.run(main)
