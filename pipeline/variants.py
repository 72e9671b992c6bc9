"""The variants table: each variant's runtime, quantization, model file and converter. convert, verify,
targets, bench, recommend, report, deploy and params look a variant up here and nowhere else; adding one
is one row of VARIANTS plus its converter in pipeline/convert.py."""

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from pipeline import paths

# Each runtime: its model directory and file suffix, and what the function installs to run it. Its
# name is the bench table's runtime column and an environment in pipeline/footprint.py.
RUNTIMES = {
    "litert": {"dir": paths.TFLITE_DIR, "suffix": ".tflite", "requirements": "lambda/requirements.txt"},
    "onnxruntime": {
        "dir": paths.ONNX_DIR,
        "suffix": ".onnx",
        "requirements": "lambda/requirements-onnxruntime.txt",
    },
}
# Each quantization: whether integer kernels run it (they take other paths on other CPUs: targets
# checks it on more photos) and whether conversion calibrates its activations on
# convert.representative_images photos.
QUANTIZATIONS = {
    "float32": {"integer": False, "calibrated": False},
    "float16": {"integer": False, "calibrated": False},  # float16 weights, float32 compute
    "dynamic_int8": {"integer": True, "calibrated": False},  # int8 weights, float activations
    "full_int8": {"integer": True, "calibrated": True},  # int8 weights and activations
}


@dataclass(frozen=True)
class Variant:
    name: str  # what params.yaml, the model file, verify, bench and deploy call it
    runtime: str  # a key of RUNTIMES: where it runs, its file suffix and requirements
    quantization: str  # a key of QUANTIZATIONS
    converter: str  # the function of pipeline/convert.py that writes its model file

    @property
    def suffix(self) -> str:
        return RUNTIMES[self.runtime]["suffix"]

    @property
    def calibrated(self) -> bool:
        return QUANTIZATIONS[self.quantization]["calibrated"]

    @property
    def integer(self) -> bool:
        return QUANTIZATIONS[self.quantization]["integer"]


TABLE = (
    Variant("float32", "litert", "float32", "tflite_float32"),
    Variant("float16", "litert", "float16", "tflite_float16"),
    Variant("dynamic_int8", "litert", "dynamic_int8", "tflite_dynamic_int8"),
    Variant("full_int8", "litert", "full_int8", "tflite_full_int8"),
    # full int8 with Xception's residual ReLUs as LeakyReLU, no retraining (pipeline/relu_swap.py)
    Variant("full_int8_leaky", "litert", "full_int8", "tflite_full_int8_leaky"),
    # full int8 with the layers whose quantization errs most kept in float (docs/gates.md, selective int8)
    Variant("selective_int8", "litert", "full_int8", "tflite_selective_int8"),
    Variant("onnx_float32", "onnxruntime", "float32", "onnx_float32"),
    Variant("onnx_int8", "onnxruntime", "full_int8", "onnx_int8"),
)
VARIANTS = {v.name: v for v in TABLE}
NAMES = tuple(VARIANTS)


def runtime(variant: str) -> str:
    """litert or onnxruntime."""
    return VARIANTS[variant].runtime


def model_path(variant: str) -> Path:
    v = VARIANTS[variant]
    return Path(RUNTIMES[v.runtime]["dir"]) / f"{variant}{v.suffix}"


def metadata_path(variant: str) -> Path:
    """The model's metadata beside it (labels, input size, variant, hash), read by the function."""
    return model_path(variant).with_suffix(".json")


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
