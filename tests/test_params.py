import sys

import pytest
import yaml

from conftest import ROOT, make_project, run, small_params
from pipeline import params
from pipeline.cli import UserError


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_project_params_load():
    p = params.load(ROOT / "params.yaml")
    assert p.train.input_size >= 71 and p.convert.variants == ["float32", "float16", "dynamic_int8", "full_int8"]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "epoch", 3, "unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
        ("train", "epochs", "many", "'train.epochs' must be int, got 'many'"),
        ("train", "epochs", True, "'train.epochs' must be int"),
        ("train", "mode", "finetune", "'train.mode' must be one of ('train', 'load')"),
        ("convert", "variants", ["float64"], "'convert.variants' has unknown ['float64']"),
        ("train", "input_size", 32, "at least 71"),
    ],
)
def test_bad_params_name_the_key(tmp_path, dataset_dir, section, key, value, message):
    data = small_params(dataset_dir)
    data[section][key] = value
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
    data["train"]["learning_rate"] = 1
    assert params.load(write(tmp_path, data)).train.learning_rate == 1.0


def test_stage_with_bad_param_prints_one_line_not_a_traceback(tmp_path, dataset_dir):
    data = small_params(dataset_dir)
    data["data"]["sorce"] = "local"
    project = make_project(tmp_path / "p", data)
    result = run([sys.executable, "-m", "pipeline.data"], project, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: params.yaml: unknown key 'data.sorce' (did you mean 'data.source'?)"
