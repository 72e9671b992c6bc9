"""What each convert.variants name means: its runtime, model file, bench row and the function's
requirements. The one place convert, verify, bench, recommend, report and deploy look it up."""

from pathlib import Path

from packaging.requirements import Requirement

from pipeline import paths

ONNX_PREFIX = "onnx_"
# Each runtime: its name in the bench table and environment sizes (pipeline/footprint.py), its
# model directory and file suffix, and what the function installs to run it.
RUNTIMES = {
    "litert": {"dir": paths.TFLITE_DIR, "suffix": ".tflite", "requirements": "lambda/requirements.txt"},
    "onnxruntime": {
        "dir": paths.ONNX_DIR,
        "suffix": ".onnx",
        "requirements": "lambda/requirements-onnxruntime.txt",
    },
}


def runtime(variant: str) -> str:
    """litert for the TFLite variants (float32, full_int8...), onnxruntime for onnx_*."""
    return "onnxruntime" if variant.startswith(ONNX_PREFIX) else "litert"


def model_path(variant: str) -> Path:
    r = RUNTIMES[runtime(variant)]
    return Path(r["dir"]) / f"{variant}{r['suffix']}"


def metadata_path(variant: str) -> Path:
    """The model's metadata beside it (labels, input size, variant, hash), read by the function."""
    return model_path(variant).with_suffix(".json")


def bench_row(variant: str) -> str:
    """The bench table's row of a variant: its own name (one name per variant in every table, plot and
    metric; the runtime is a column of its own where a table shows it)."""
    return variant


def variant_of_row(row: str) -> str:
    """The variant a bench table's row measures (the keras row is no variant)."""
    return row


def requirements(variant: str) -> str:
    """The requirements file the function image or zip installs for this variant: only its runtime."""
    return RUNTIMES[runtime(variant)]["requirements"]


# Lambda's architecture names and what Python's platform_machine says on each.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}


def pins(requirements_file: "str | Path", architecture: str) -> list[str]:
    """The requirements file's lines that apply on the architecture, markers evaluated for it (pip
    evaluates them for the machine it runs on, even with --platform), without their markers."""
    environment = {"platform_machine": MACHINES[architecture]}
    chosen = []
    for line in Path(requirements_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            chosen.append(str(requirement))
    return chosen
