"""How much disk each runtime's Python environment needs: what a Lambda image would carry."""

import re
from importlib import metadata

RUNTIMES = {
    "litert": ["ai-edge-litert", "numpy", "pillow"],
    "tensorflow": ["tensorflow-cpu", "pillow"],
    "onnxruntime": ["onnxruntime", "numpy", "pillow"],
}


def _requirements(name: str) -> list[str]:
    names = []
    for req in metadata.distribution(name).requires or []:
        if "extra ==" in req:
            continue
        names.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    return names


def closure_mb(roots: list[str]) -> float:
    """Installed size of the distributions and everything they require (MiB)."""
    seen, todo, total = set(), list(roots), 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in dist.files or [])
        todo += _requirements(name)
    return round(total / 2**20, 1)


def environment_mb() -> dict:
    return {runtime: closure_mb(roots) for runtime, roots in RUNTIMES.items()}
