"""Atomic writes, content hashes and explicit, cached downloads with timeouts."""

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import requests
from tqdm import tqdm

from pipeline.cli import UserError


@contextlib.contextmanager
def atomic_path(dest: "str | Path"):
    """Yield a temporary path beside dest; rename it onto dest only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps dest's suffix: Keras and TFLite writers check it.
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; artifacts are ordinary files
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(dest: "str | Path", text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_json(dest: "str | Path", data) -> None:
    write_text(dest, json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256(path: "str | Path") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: "str | Path", timeout: float = 30.0) -> Path:
    """Fetch url into dest (kept as a cache: an existing dest is not fetched again)."""
    dest = Path(dest)
    if dest.exists():
        return dest
    if not url.startswith(("http://", "https://")):
        raise UserError(f"not an http(s) URL: {url!r}")
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            total = int(r.headers.get("content-length", 0)) or None
            with (
                atomic_path(dest) as tmp,
                open(tmp, "wb") as f,
                tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar,
            ):
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as e:
        raise UserError(f"cannot download {url}: {type(e).__name__}: {e}") from None
    return dest


@contextlib.contextmanager
def output_to(log_path: Path):
    """Send the converter's native stdout/stderr chatter (~240 lines a model) to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        saved = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
