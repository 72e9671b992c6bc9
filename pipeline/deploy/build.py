"""What goes into the function, and the key that names it: the chosen model staged beside the
serving package, a content hash of every input (no git needed), and the zip package."""

import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline import cli, files, params, release, variants
from pipeline.deploy import errors, limits
from pipeline.deploy.programs import sh
from serving import HANDLER

DOCKERFILE = Path("lambda/Dockerfile")
SERVING = Path("lambda/serving")
MODEL_DIR = Path("build/model")  # the image's and the zip's model/, staged here
ZIP_DIR = Path("build/zip")
ZIP = Path("build/function.zip")
PIP_PLATFORMS = {"x86_64": "x86_64", "arm64": "aarch64"}


def chosen_model(d: params.Deploy) -> tuple[str, Path]:
    """deploy.variant, else the recommended one, from the release manifest; refused where verify or the
    targets stage (on Lambda's CPUs for this architecture) excluded it."""
    manifest = release.load()
    variant = d.variant or manifest["variant"]
    if variant not in variants.NAMES:
        raise cli.UserError(f"deploy.variant: unknown {variant!r}; known: {variants.NAMES}")
    entry = manifest["variants"].get(variant)
    if entry is None:
        raise cli.UserError(f"the verify stage did not check {variant}: add it to convert.variants and run `dvc repro`")
    if entry["excluded"]:
        raise errors.VariantExcluded(
            f"{variant} was excluded at verify ({entry['excluded']}): deploy ships only variants that passed"
        )
    if changed := entry["excluded_on"].get(d.architecture):
        raise errors.VariantExcluded(f"{variant} was excluded on {d.architecture} by the targets stage: {changed}")
    model = Path(entry["model"])
    if not model.exists():
        raise cli.UserError(f"{model} not found: run `dvc repro` first")
    return variant, model


def verify_accuracy(variant: str) -> "float | None":
    """The verify stage's test accuracy of this variant, from the release manifest."""
    return release.load()["variants"][variant]["accuracy"]


def model_metadata(variant: str, model: Path) -> dict:
    """What the function reports and answers with (variant, the hash of the file that ships, labels
    in output order, input size), from the release manifest."""
    manifest = release.load()
    return {
        "variant": variant,
        "sha256": files.sha256(model),
        "labels": manifest["labels"],
        "input_size": manifest["input_size"],
    }


def copy_model(variant: str, model: Path, into: Path = MODEL_DIR) -> list[str]:
    """build/model/ holds exactly one model (model.tflite or model.onnx: the handler loads the one
    it finds) and model.json (its labels, input size, variant, sha256); returns the labels. into:
    another folder (deploy --dry-run stages in a temporary one, leaving build/ as it is)."""
    meta = model_metadata(variant, model)
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    shutil.copyfile(model, into / f"model{model.suffix}")
    files.write_json(into / "model.json", meta)
    return meta["labels"]


def requirements(model_dir: Path = MODEL_DIR) -> Path:
    """What the function installs for the staged model: its runtime only (LiteRT or ONNX Runtime)."""
    variant = json.loads((model_dir / "model.json").read_text())["variant"]
    return Path(variants.requirements(variant))


def function_files(model_dir: Path = MODEL_DIR) -> list[Path]:
    """Everything the function is made of, in a fixed order."""
    serving = sorted(f for f in SERVING.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    return [DOCKERFILE, requirements(model_dir), *serving, *sorted(model_dir.glob("*"))]


def code_key(d: params.Deploy, model_dir: Path = MODEL_DIR) -> str:
    """A content hash of the function's files and the params that change what is built: the same
    key means the same code, whatever git says (uncommitted edits count, no repository needed). A
    model staged in another folder (model_dir) is hashed under build/model's names: the same key."""
    h = hashlib.sha256()
    for f in function_files(model_dir):
        name = MODEL_DIR / f.relative_to(model_dir) if f.is_relative_to(model_dir) else f
        h.update(f"{name.as_posix()}\0{files.sha256(f)}\0".encode())
    # What the package is built on: the base image's Python, or the wheels chosen for the zip's runtime.
    built = {"package": d.package, "architecture": d.architecture}
    built.update({"base_image": d.base_image} if d.package == "image" else {"zip_runtime": d.zip_runtime})
    h.update(json.dumps(built, sort_keys=True).encode())
    return h.hexdigest()[:20]


def function_config(d: params.Deploy, mb_per_vcpu: int, role_arn: str = "") -> dict:
    """The versioned configuration that UpdateFunctionConfiguration sets (a change publishes a new
    version without new code). A zip runs on the runtime its wheels were chosen for, with our handler;
    an image names its own (CMD)."""
    threads = max(1, round(d.memory_mb / mb_per_vcpu))
    config = {
        "MemorySize": d.memory_mb,
        "Timeout": d.timeout_s,
        "Environment": {"Variables": {"NUM_THREADS": str(threads)}},
    }
    if d.package == "zip":
        config.update(Runtime=d.zip_runtime, Handler=HANDLER)
    return {**config, "Role": role_arn} if role_arn else config


def config_key(d: params.Deploy, mb_per_vcpu: int) -> str:
    """The function's whole configuration: what UpdateFunctionConfiguration sets, the package type and
    the architecture (set with the code)."""
    whole = {**function_config(d, mb_per_vcpu), "PackageType": d.package, "Architectures": [d.architecture]}
    if d.snapstart:  # only when on: the keys of functions deployed before SnapStart stay what they were
        whole["SnapStart"] = "PublishedVersions"
    return hashlib.sha256(json.dumps(whole, sort_keys=True).encode()).hexdigest()[:12]


def build_zip(d: params.Deploy) -> Path:
    """The serving package + the model + the requirements' wheels for Lambda's Python and
    architecture, zipped in a fixed order with fixed timestamps (the same inputs, the same bytes)."""
    shutil.rmtree(ZIP_DIR, ignore_errors=True)
    ZIP_DIR.mkdir(parents=True)
    version = d.zip_runtime.removeprefix("python")
    arch = PIP_PLATFORMS[d.architecture]
    platforms = [f"--platform=manylinux_2_{n}_{arch}" for n in (28, 27, 17)] + [f"--platform=manylinux2014_{arch}"]
    # pip evaluates markers for this machine even with --platform: the requirements resolved for the
    # function's architecture (ai-edge-litert's pin differs on arm64), written out for pip -r.
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="requirements-") as pinned:
        pinned.write("\n".join(variants.pins(requirements(), d.architecture)) + "\n")
        pinned.flush()
        sh(
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",  # this Python's .pyc files are not zipped (Lambda's may be another): pip 4.7 -> 2.4 s
            "--target",
            str(ZIP_DIR),
            "--only-binary=:all:",
            "--implementation=cp",
            f"--python-version={version}",
            *platforms,
            "-r",
            pinned.name,
            what=f"installing {requirements()} ({d.architecture}) for the zip package",
        )
    shutil.copytree(SERVING, ZIP_DIR / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(MODEL_DIR, ZIP_DIR / "model")
    unzipped = sum(f.stat().st_size for f in ZIP_DIR.rglob("*") if f.is_file()) / 2**20
    if unzipped > limits.ZIP_UNZIPPED_MB:
        raise cli.UserError(
            f"the zip package unzips to {unzipped:.0f} MB, over Lambda's {limits.ZIP_UNZIPPED_MB} MB: "
            "use deploy.package: image"
        )
    with zipfile.ZipFile(ZIP, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in ZIP_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(str(f.relative_to(ZIP_DIR)), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, f.read_bytes(), zipfile.ZIP_DEFLATED)
    return ZIP
