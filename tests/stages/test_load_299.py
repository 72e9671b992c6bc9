"""train.mode load on the original service's file exactly: a tf.keras .h5 of a nested Xception at 299 px,
Dense 100, Dropout 0.2, Dense 10, through convert and verify, with logits equal to tf_keras's own.

Minutes of CPU (a 299 px Xception written, loaded, converted and verified): `make test-heavy` runs it,
and .ci/run, beside test_load.py's runs of the same path at 75 and 80 px."""

import pytest
from test_load import assert_same_as_tf_keras, build_keras2_models, loaded_info, run_keras2_projects

pytestmark = pytest.mark.heavy


def test_nested_keras2_h5_at_299(tmp_path_factory, dataset_dir):
    models = build_keras2_models(tmp_path_factory.mktemp("keras2"), dataset_dir, [("nested", 299, 0.2)])
    runs = run_keras2_projects(
        tmp_path_factory.mktemp("keras2-runs"), dataset_dir, models, {("nested", 299): {"data.max_per_class": 1}}
    )
    project, photos, expected = runs["nested", 299]
    info = loaded_info(project)
    assert info["format"] == "keras2_h5" and info["nested_models"] == ["xception"] and info["input_size"] == 299
    assert info["parameters"] == 21_067_390
    assert_same_as_tf_keras(project, photos, expected, 299)
