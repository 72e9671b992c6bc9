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
