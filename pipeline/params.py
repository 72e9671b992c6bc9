"""params.yaml read once into typed objects. Unknown, missing or mistyped keys name themselves."""

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import variants
from pipeline.cli import UserError


@dataclass(frozen=True)
class Split:
    """How a data set of one folder per class (no train/validation/test folders) is split: per class."""

    validation: float  # share of each class's photos (at least one photo)
    test: float
    seed: int


@dataclass(frozen=True)
class Data:
    source: str  # local | download
    local_dir: str
    url: str
    download_dir: str
    expected_images: int
    max_per_class: int  # 0 = every image; a small number makes a quick run
    classes: list  # [] = every class folder, sorted; names fix the model's output order, or a subset
    split: Split
    # 0 = as max_per_class; N keeps the first N validation photos a class (last: code that builds a Data
    # for one rule may leave it out; params.yaml must still name it)
    max_validation_per_class: int = 0


@dataclass(frozen=True)
class Recipe:
    """How to train: one recipe from scratch, one from ImageNet (or a weights file)."""

    weights: str  # none | imagenet | path to an Xception include_top=False weights file
    input_size: int
    train_sizes: list  # progressive resizing: the first epochs at these sizes, the rest at input_size
    freeze_base: bool
    bn_momentum: float  # BatchNorm moving-average momentum (Keras default 0.99)
    dense_size: int  # 0 = no inner dense layer
    dropout: float
    augment: bool
    min_crop_area: float  # augment: random crops cover this much of the image area, or more
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    label_smoothing: float
    warmup_epochs: int


@dataclass(frozen=True)
class Train:
    mode: str  # train | load
    load_from: str  # path or http(s) URL of a .keras/.h5 model, for mode: load
    min_load_accuracy: float  # a loaded model must reach this on validation (checks its labels)
    recipe: str  # scratch | transfer: the recipe that trains (dvc.yaml makes only that one a dependency)
    imagenet_url: str  # where weights: imagenet downloads from (Keras' own file), cached in data.download_dir
    residual_activation: str  # relu | leaky_relu
    mixed_precision: bool
    seed: int
    scratch: Recipe
    transfer: Recipe
    labels: list  # mode load: the model's output labels in order where no JSON beside the file has them

    @property
    def chosen(self) -> Recipe:
        return getattr(self, self.recipe)


@dataclass(frozen=True)
class Convert:
    variants: list
    representative_images: int
    int8_io: str  # float | int8 | uint8
    selective_float_layers: int  # selective_int8: the layers whose int8 quantization errs most, kept in float
    selective_debug_images: int  # selective_int8: calibration photos the per-layer errors are measured on
    leaky_slope: float  # full_int8_leaky: the LeakyReLU slope that replaces the residual ReLUs
    onnx_reduce_range: bool  # onnx_int8: 7-bit weights, so x86 without VNNI cannot saturate (docs/targets.md)


@dataclass(frozen=True)
class Verify:
    num_threads: int
    min_agreement: float
    max_accuracy_drop: float  # fails only when the difference's interval lies wholly below minus this (docs/gates.md)
    confidence: float  # of the interval on each variant's accuracy difference from Keras (exact binomial)
    on_gate_failure: str  # stop (the stage fails) | exclude (the failing variants are left out, with why)


@dataclass(frozen=True)
class Targets:
    """The variants verify kept, run in the function's runtime on Lambda's CPUs under qemu (docs/targets.md)."""

    architectures: list  # x86_64 (as Haswell: AVX2, no AVX-512/VNNI) and/or arm64 (as Neoverse N1, Graviton2)
    int8_photos: int  # test photos per int8 variant: integer kernels take other paths on other CPUs
    float_photos: int  # per float variant: float kernels differ in rounding only
    min_agreement: float  # top-1 agreement with the build machine's answers (same runtime and photos)
    max_prob_diff: float  # largest probability difference from them allowed
    timeout_s: int  # per target; no answer by then fails the stage
    cache_dir: str  # the arm64 Python (debootstrap) and its wheels, made once


@dataclass(frozen=True)
class Bench:
    num_threads: int  # 0 = every core
    warm_runs: int
    cold_start_repeats: int
    batch_size: int  # for images/second
    keras: bool  # measure Keras/TensorFlow itself alongside the TFLite variants
    handler_runs: int  # rounds of the handler end to end, per runtime, photo and thread count
    phone_photo_px: list  # [width, height]: the handler is also timed on a photo of a phone's size


@dataclass(frozen=True)
class Recommend:
    max_accuracy_drop: float  # test accuracy a shippable variant may lose against Keras (verify's interval)
    min_agreement: float  # top-1 agreement with Keras a shippable variant must reach
    prefer: str  # warm_p50 | cold_start | size | cost: how to pick among the shippable variants
    bootstrap_resamples: int  # the test photos resampled this often: how often the same rule picks the same variant
    bootstrap_seed: int
    stable_share: float  # a choice picked in fewer resamples than this share is reported as within noise


@dataclass(frozen=True)
class Cost:
    memory_mb: list  # Lambda memory sizes to price
    photo: str  # dataset | phone: whose end-to-end handler time is priced
    cold_start_share: float  # fraction of requests that start a new execution environment (init billed)
    mb_per_vcpu: int  # Lambda gives one vCPU's worth of CPU at this much memory
    prices_region: str  # the prices below are this region's list prices
    prices_date: str  # on this date
    x86_64_price_per_gb_second: float
    arm64_price_per_gb_second: float
    price_per_million_requests: float  # Lambda's
    api_price_per_million: float  # HTTP API per million requests, the first tier
    api_price_per_million_past_tier: float  # HTTP API past the first tier
    api_tier_millions: float  # the first tier's size, millions of requests a month
    api_request_step_kb: int  # HTTP API meters each request in steps of this many KB
    requests_per_month_millions: float  # the monthly traffic priced (where it falls among the API's tiers)
    logs_price_per_gb: float  # CloudWatch Logs ingestion per GB
    snapstart_cache_price_per_gb_second: float  # SnapStart: a version's cached snapshot, per GB-second
    snapstart_restore_price_per_gb: float  # SnapStart: each restore, per GB of memory
    snapstart_versions: int  # versions whose snapshots are cached at once (deploy keeps live's and rollback's)


@dataclass(frozen=True)
class Tune:
    memory_mb: list  # make tune: the memory sizes the deployed function is invoked at
    invocations: int  # per memory size; the first after each update runs in a new environment (cold)


@dataclass(frozen=True)
class Deploy:
    variant: str  # "" = the recommend stage's choice
    region: str
    repository: str
    function_name: str
    role_name: str
    api_name: str
    endpoint: str  # function_url | http_api: the front door clients call
    url_auth: str  # function_url: NONE | AWS_IAM
    url_cors_origins: list  # function_url: origins browsers may POST from ([] = no CORS)
    snapstart: bool  # SnapStart on published versions (where AWS supports it for the package)
    memory_mb: int
    timeout_s: int
    architecture: str  # x86_64 | arm64
    untagged_image_days: int  # ECR lifecycle: untagged images expire after this; tagged ones never
    reserved_concurrency: int  # the function's cap on concurrent executions (0 = none reserved)
    log_retention_days: int  # CloudWatch Logs retention of the function's log group
    max_accuracy_drop: float  # refuse a variant whose verify accuracy is this much below the live one's (--force)
    throttle_rate: float  # API Gateway requests per second
    throttle_burst: int
    base_image: str  # Lambda base image the function image is built on
    registry: str  # "" = the registry ECR names; a host:port overrides it (a local registry)
    smoke_test: str  # local (run the image with the container engine) | aws (invoke the new version)
    package: str  # image | zip
    zip_runtime: str  # Lambda runtime of a zip package, e.g. python3.12
    s3_bucket: str  # for zips over 50 MB; "" = a bucket deploy makes, <function_name>-<account id>-<random>
    strategy: str  # all_at_once | canary | linear: how 'live' moves to a new version, watched by alarms
    canary_percent: int  # canary: the new version's share of the traffic while it is watched
    canary_minutes: float  # canary: how long, then all of it
    linear_percent: int  # linear: the share added at each step
    linear_minutes: float  # linear: how long each step is watched
    watch_after_minutes: float  # after the last step, how long the new version keeps its share (late metrics)
    min_canary_requests: int  # fewer requests answered by the new version meanwhile: rolled back
    watch_every_s: float  # how often the alarms are read while a new version is watched
    alarm_error_rate: float  # alarms: the new version's share of 5xx answers, or of invocations failed in Lambda
    alarm_p90_ms: float  # alarm: its p90 model-and-decode latency (ModelLatency) in a minute above this
    alarm_probability_drop: float  # alarm: its mean top-class probability this much below the live version's
    alarm_min_samples: int  # a minute with fewer requests than this (either version's) is not judged by any alarm
    alarm_periods: int  # alarms look at this many of the last minutes (EvaluationPeriods)
    alarm_datapoints: int  # and fire when this many of them breach (DatapointsToAlarm)
    lock_stale_minutes: float  # a deploy's lock older than this is taken over (its deploy was killed outright)


@dataclass(frozen=True)
class Params:
    data: Data
    train: Train
    convert: Convert
    verify: Verify
    targets: Targets
    bench: Bench
    recommend: Recommend
    cost: Cost
    deploy: Deploy
    tune: Tune


CHOICES = {
    "data.source": ("local", "download"),
    "train.mode": ("train", "load"),
    "verify.on_gate_failure": ("stop", "exclude"),
    "train.recipe": ("scratch", "transfer"),
    "train.residual_activation": ("relu", "leaky_relu"),
    "convert.int8_io": ("float", "int8", "uint8"),
    "recommend.prefer": ("warm_p50", "cold_start", "size", "cost"),
    "cost.photo": ("dataset", "phone"),
    "deploy.architecture": ("x86_64", "arm64"),
    "deploy.smoke_test": ("local", "aws"),
    "deploy.package": ("image", "zip"),
    "deploy.endpoint": ("function_url", "http_api"),
    "deploy.url_auth": ("NONE", "AWS_IAM"),
    "deploy.strategy": ("all_at_once", "canary", "linear"),
}
# A Lambda function's memory range in MB: every memory_mb (deploy's, the sizes cost prices and tune
# sweeps) is checked against it where params.yaml is read, so recommend never prices a size Lambda
# refuses; pipeline/deploy/limits.py states it from here.
LAMBDA_MEMORY_MB = (128, 10240)
# Numbers that must be at least 1 (counts, sizes) and fractions that must lie in [0, 1], by key name
# in any section: `epochs: 0` or `mb_per_vcpu: 0` stops with one line, not a ZeroDivisionError later.
AT_LEAST_ONE = {
    "epochs", "batch_size", "representative_images", "warm_runs", "cold_start_repeats",
    "mb_per_vcpu", "memory_mb", "timeout_s", "log_retention_days", "invocations", "handler_runs",
    "int8_photos", "float_photos", "bootstrap_resamples", "selective_float_layers",
    "selective_debug_images", "api_request_step_kb",
}  # fmt: skip
FRACTIONS = {
    "dropout", "min_crop_area", "label_smoothing", "max_accuracy_drop", "min_agreement", "min_load_accuracy",
    "leaky_slope", "alarm_error_rate", "alarm_probability_drop", "cold_start_share", "validation", "test",
    "max_prob_diff", "confidence", "stable_share",
}  # fmt: skip


def _build(cls, raw, section: str):
    """A dataclass from a dict: nested dataclasses recurse, every key checked."""
    prefix = f"{section}." if section else ""
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: '{section}' must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), fields, n=1)
            maybe = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
            raise UserError(f"params.yaml: unknown key '{prefix}{key}'{maybe}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            raise UserError(f"params.yaml: missing key '{prefix}{name}'")
        value, kind = raw[name], f.type
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, f"{prefix}{name}")
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and value is None:
            value = ""
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"params.yaml: '{prefix}{name}' must be {kind.__name__}, got {value!r}")
        if name in AT_LEAST_ONE and isinstance(value, int) and value < 1:
            raise UserError(f"params.yaml: '{prefix}{name}' must be at least 1, got {value!r}")
        if name in FRACTIONS and not 0 <= value <= 1:
            raise UserError(f"params.yaml: '{prefix}{name}' must be between 0 and 1, got {value!r}")
        if name == "memory_mb" and not all(
            isinstance(m, int) and LAMBDA_MEMORY_MB[0] <= m <= LAMBDA_MEMORY_MB[1]
            for m in (value if isinstance(value, list) else [value])
        ):
            low, high = LAMBDA_MEMORY_MB
            raise UserError(
                f"params.yaml: '{prefix}{name}' must be Lambda memory sizes, {low}-{high} MB, got {value!r}"
            )
        if "price" in name and isinstance(value, float) and value < 0:
            raise UserError(f"params.yaml: '{prefix}{name}' must be 0 or more, got {value!r}")
        if name == "phone_photo_px" and not (len(value) == 2 and all(isinstance(n, int) and n >= 1 for n in value)):
            raise UserError(f"params.yaml: '{prefix}{name}' must be [width, height] in pixels, got {value!r}")
        allowed = CHOICES.get(f"{prefix}{name}")
        if allowed and value not in allowed:
            raise UserError(f"params.yaml: '{prefix}{name}' must be one of {allowed}, got {value!r}")
        values[name] = value
    return cls(**values)


def load(path: "str | Path" = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: run stages from the project's root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must be a mapping of sections")
    params = _build(Params, raw, "")
    bad = [v for v in params.convert.variants if v not in variants.NAMES]
    if bad:
        raise UserError(f"params.yaml: 'convert.variants' has unknown {bad}; known: {variants.NAMES}")
    for name in ("scratch", "transfer"):
        r, key = getattr(params.train, name), f"train.{name}"
        if r.input_size < 71:
            raise UserError(f"params.yaml: '{key}.input_size' must be at least 71 (Xception's minimum)")
        if not all(isinstance(s, int) and 71 <= s <= r.input_size for s in r.train_sizes):
            raise UserError(
                f"params.yaml: '{key}.train_sizes' must be sizes from 71 to its input_size ({r.input_size}), "
                f"got {r.train_sizes!r}"
            )
    unknown = [a for a in params.targets.architectures if a not in CHOICES["deploy.architecture"]]
    if unknown or len(set(params.targets.architectures)) != len(params.targets.architectures):
        raise UserError(
            f"params.yaml: 'targets.architectures' must be distinct names from {CHOICES['deploy.architecture']}, "
            f"got {params.targets.architectures!r}"
        )
    for key, names in (("data.classes", params.data.classes), ("train.labels", params.train.labels)):
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise UserError(f"params.yaml: '{key}' must be distinct non-empty names, got {names!r}")
    if params.data.split.validation + params.data.split.test >= 1:
        raise UserError("params.yaml: 'data.split.validation' + 'data.split.test' must leave photos to train on")
    return params


def main() -> None:
    """Check params.yaml as every stage reads it and change nothing. `make repro` runs it before dvc
    repro: DVC removes a stage's outputs before the stage reads its params, so a mistyped key caught
    here leaves every output in place."""
    load()
    print("params.yaml: OK")


if __name__ == "__main__":
    from pipeline import cli

    cli.run(main)
