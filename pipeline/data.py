"""Stage data: find the clothing data set (local copy or download), check it, write the manifest."""

import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline import cli, files, params, paths
from serving.images import ImageError, load_image
from serving.labels import LABELS

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def fetch(url: str, download_dir: Path) -> Path:
    """Download and unpack the data set's zip once; return the folder holding the splits."""
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
    roots = [p.parent for p in extracted.rglob("train") if p.is_dir()]
    if not roots:
        raise cli.UserError(f"no train/ folder inside the archive from {url}")
    return roots[0]


def find_root(p: params.Data) -> Path:
    if p.source == "download":
        return fetch(p.url, Path(p.download_dir))
    root = Path(p.local_dir)
    if not (root / "train").is_dir():
        raise cli.UserError(
            f"data set not found at {root} (no train/ folder): set data.local_dir to your copy, "
            "or data.source: download to fetch it from data.url"
        )
    return root


def scan(root: Path) -> pd.DataFrame:
    """Every image file under root/<split>/<class>/, with the class folders checked against LABELS."""
    rows = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise cli.UserError(f"{root} has no {split}/ folder")
        classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if classes != sorted(LABELS):
            raise cli.UserError(f"{split_dir} has classes {classes}, expected {sorted(LABELS)}")
        for label in LABELS:
            for f in sorted((split_dir / label).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append({"path": str(f), "label": label, "split": split})
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


def prepare(p: params.Data) -> dict:
    root = find_root(p)
    found = scan(root)
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
    with files.atomic_path(paths.MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)
    with files.atomic_path(paths.BAD_IMAGES) as tmp:
        bad.to_csv(tmp, index=False)
    counts = Counter(zip(manifest["split"], manifest["label"], strict=True))
    summary = {
        "root": str(root),
        "images_found": len(found),
        "bad_images": len(bad),
        "images": len(manifest),
        "splits": {s: sum(counts[s, label] for label in LABELS) for s in SPLITS},  # per class: the manifest
    }
    files.write_json(paths.DATA_SUMMARY, summary)
    return summary


def main() -> None:
    p = params.load()
    summary = prepare(p.data)
    print(
        f"manifest: {summary['images']} images {summary['splits']}; {summary['bad_images']} unreadable "
        f"(listed in {paths.BAD_IMAGES})"
    )


if __name__ == "__main__":
    cli.run(main)
