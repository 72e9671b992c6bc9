import sys

import pytest
import yaml

from pipeline import params
from pipeline.cli import UserError
from support import ROOT, make_project, run, set_key, small_params


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_project_params_load():
    p = params.load(ROOT / "params.yaml")
    assert (
        p.train.chosen is p.train.scratch
        and p.train.transfer.input_size == 299
        and p.train.transfer.weights == "imagenet"
    )
    assert p.train.scratch.input_size >= 71 and {"full_int8", "onnx_int8"} <= set(p.convert.variants)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train.scratch", "epoch", 3, "unknown key 'train.scratch.epoch' (did you mean 'train.scratch.epochs'?)"),
        ("train.scratch", "epochs", "many", "'train.scratch.epochs' must be int, got 'many'"),
        ("train.transfer", "epochs", True, "'train.transfer.epochs' must be int"),
        ("train", "mode", "finetune", "'train.mode' must be one of ('train', 'load')"),
        ("convert", "variants", ["float64"], "'convert.variants' has unknown ['float64']"),
        ("train.transfer", "input_size", 32, "'train.transfer.input_size' must be at least 71"),
        ("train.scratch", "train_sizes", [64, 80], "'train.scratch.train_sizes' must be sizes from 71"),
        ("train.scratch", "epochs", 0, "'train.scratch.epochs' must be at least 1, got 0"),
        ("cost", "mb_per_vcpu", 0, "'cost.mb_per_vcpu' must be at least 1, got 0"),
        ("cost", "memory_mb", [0], "'cost.memory_mb' must be Lambda memory sizes, 128-10240 MB, got [0]"),
        ("deploy", "memory_mb", 0, "'deploy.memory_mb' must be at least 1, got 0"),
        # Lambda's range, checked where params.yaml is read: recommend and report never price a 20 GB function
        ("deploy", "memory_mb", 20000, "'deploy.memory_mb' must be Lambda memory sizes, 128-10240 MB, got 20000"),
        ("deploy", "memory_mb", 127, "'deploy.memory_mb' must be Lambda memory sizes, 128-10240 MB, got 127"),
        ("tune", "memory_mb", [1024, 10241], "'tune.memory_mb' must be Lambda memory sizes, 128-10240 MB"),
        ("verify", "min_agreement", 1.5, "'verify.min_agreement' must be between 0 and 1, got 1.5"),
        ("train", "recipe", "finetune", "'train.recipe' must be one of ('scratch', 'transfer')"),
    ],
)
def test_bad_params_name_the_key(tmp_path, dataset_dir, section, key, value, message):
    data = small_params(dataset_dir)
    set_key(data, f"{section}.{key}", value)
    with pytest.raises(UserError) as err:
        params.load(write(tmp_path, data))
    assert message in str(err.value)


def test_missing_key_and_section(tmp_path, dataset_dir):
    data = small_params(dataset_dir)
    del data["verify"]["min_agreement"]
    with pytest.raises(UserError, match="missing key 'verify.min_agreement'"):
        params.load(write(tmp_path, data))
    del data["verify"]
    with pytest.raises(UserError, match="missing key 'verify'"):
        params.load(write(tmp_path, data))


def test_int_is_accepted_where_float_is_expected(tmp_path, dataset_dir):
    data = small_params(dataset_dir)
    data["train"]["scratch"]["learning_rate"] = 1
    assert params.load(write(tmp_path, data)).train.scratch.learning_rate == 1.0


def test_stage_with_bad_param_prints_one_line_not_a_traceback(tmp_path, dataset_dir):
    data = small_params(dataset_dir)
    data["data"]["sorce"] = "local"
    project = make_project(tmp_path / "p", data)
    result = run([sys.executable, "-m", "pipeline.data"], project, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: unknown key 'data.sorce' (did you mean 'data.source'?)"


# Issue 34's pass on params.py (mutation_2026-12-08.md): each test names the _build / load mutants it kills.


def refusal(tmp_path, data) -> str:
    """params.load's one-line refusal of these params."""
    with pytest.raises(UserError) as err:
        params.load(write(tmp_path, data))
    return str(err.value)


def test_the_limits_themselves_are_accepted(tmp_path, dataset_dir):
    """Each range's ends are in it: _build 76, 77 (Lambda's 128 and 10,240 MB), 88 (a price of 0), 101, 102
    (a 1x1 phone photo); load 33, 34 (input_size 71), 39, 40, 41 (train_sizes from 71 to input_size)."""
    data = small_params(dataset_dir)
    set_key(data, "deploy.memory_mb", 128)
    set_key(data, "cost.memory_mb", [128, 10240])
    set_key(data, "cost.logs_price_per_gb", 0.0)
    set_key(data, "bench.phone_photo_px", [1, 1])
    set_key(data, "train.transfer.input_size", 71)
    set_key(data, "train.scratch.train_sizes", [71, 75])  # small_params' scratch input_size is 75
    p = params.load(write(tmp_path, data))
    assert (p.deploy.memory_mb, p.cost.memory_mb, p.cost.logs_price_per_gb) == (128, [128, 10240], 0.0)
    assert (p.bench.phone_photo_px, p.train.transfer.input_size, p.train.scratch.train_sizes) == (
        [1, 1], 71, [71, 75]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "shown"),
    [([0, 480], "[0, 480]"), ([640.5, 480], "[640.5, 480]"), ([640], "[640]"), ([640, 480, 3], "[640, 480, 3]")],
)
def test_a_phone_photo_is_two_whole_pixel_counts_of_at_least_one(tmp_path, dataset_dir, value, shown):
    """_build 93, 94 (the key's name), 96 (`or` for the length's `and`), 100 (`or`: 0 or 640.5 pixels),
    103 (the message)."""
    data = small_params(dataset_dir)
    set_key(data, "bench.phone_photo_px", value)
    assert refusal(tmp_path, data) == (
        f"params.yaml: 'bench.phone_photo_px' must be [width, height] in pixels, got {shown}"
    )


def test_a_negative_price_is_refused_by_its_name(tmp_path, dataset_dir):
    """_build 85, 86, 87 (which keys are prices), 90 (the message)."""
    data = small_params(dataset_dir)
    set_key(data, "cost.x86_64_price_per_gb_second", -0.5)
    assert refusal(tmp_path, data) == "params.yaml: 'cost.x86_64_price_per_gb_second' must be 0 or more, got -0.5"


def test_an_unknown_key_like_no_other_gets_no_suggestion(tmp_path, dataset_dir):
    """_build 21 (a suggestion from an empty list: IndexError), 23 (words added where there is none)."""
    data = small_params(dataset_dir)
    set_key(data, "train.scratch.zzz", 1)
    assert refusal(tmp_path, data) == "params.yaml: unknown key 'train.scratch.zzz'"


def test_an_empty_string_key_may_be_left_empty_in_yaml(tmp_path, dataset_dir):
    """`variant:` with nothing after it is YAML's null, read as "" (the recommend stage's choice):
    _build 45, 47, 48."""
    data = small_params(dataset_dir)
    set_key(data, "deploy.variant", None)
    assert params.load(write(tmp_path, data)).deploy.variant == ""


def test_a_section_that_is_not_a_mapping_is_named(tmp_path, dataset_dir):
    """_build 6 (the message)."""
    data = small_params(dataset_dir)
    data["verify"] = 3
    assert refusal(tmp_path, data) == "params.yaml: 'verify' must be a mapping of keys to values"


def test_a_file_missing_not_yaml_or_not_a_mapping_says_so(tmp_path):
    """load 6, 10, 12 (the messages)."""
    missing = tmp_path / "none.yaml"
    with pytest.raises(UserError, match=r"none\.yaml not found: run stages from the project's root$"):
        params.load(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [local\n")
    with pytest.raises(UserError, match=r"broken\.yaml is not valid YAML: "):
        params.load(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- data\n- train\n")
    with pytest.raises(UserError, match=r"listed\.yaml must be a mapping of sections$"):
        params.load(listed)


@pytest.mark.parametrize("names", [["x86_64", "sparc"], ["arm64", "arm64"]])
def test_target_architectures_are_distinct_known_names(tmp_path, dataset_dir, names):
    """load 43 (no unknown name), 47 (`and`: a repeated known name passes), 49, 50, 51 (the message)."""
    data = small_params(dataset_dir)
    set_key(data, "targets.architectures", names)
    assert refusal(tmp_path, data) == (
        f"params.yaml: 'targets.architectures' must be distinct names from ('x86_64', 'arm64'), got {names!r}"
    )


@pytest.mark.parametrize("key", ["data.classes", "train.labels"])
@pytest.mark.parametrize("names", [["dress", "dress"], ["dress", ""]])
def test_classes_and_labels_are_distinct_non_empty_names(tmp_path, dataset_dir, key, names):
    """load 56 (`and`: a repeated name passes), 59 (`or`: an empty name passes), 52-55 (the key in the
    message), 61 (the message)."""
    data = small_params(dataset_dir)
    set_key(data, key, names)
    assert refusal(tmp_path, data) == f"params.yaml: '{key}' must be distinct non-empty names, got {names!r}"


@pytest.mark.parametrize(("validation", "test"), [(0.5, 0.5), (0.0, 1.0), (0.9, 0.2)])
def test_the_split_must_leave_photos_to_train_on(tmp_path, dataset_dir, validation, test):
    """load 62 (`-` for `+`), 63 (`> 1`: exactly all of them passes), 64 (`>= 2`), 65-67 (the message)."""
    data = small_params(dataset_dir)
    set_key(data, "data.split.validation", validation)
    set_key(data, "data.split.test", test)
    assert refusal(tmp_path, data) == (
        "params.yaml: 'data.split.validation' + 'data.split.test' must leave photos to train on"
    )
