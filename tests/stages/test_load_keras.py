"""train.mode load with a user's own .keras file, from a path and from a URL, and its one-line refusals.
The model is the deploy run's tiny one (support.build_deploy_run): what is under test is the load path,
so these run while the small run trains."""

import json
from pathlib import Path

import pytest

from support import LABELS, make_project, small_params, split_photos, stage, stages_in_one_process


def load_project(tmp_path, dataset_dir, **overrides):
    project = make_project(tmp_path / "project", small_params(dataset_dir, **overrides))
    stage("data", project)
    return project


def test_load_from_keras_file_and_from_url(tmp_path, dataset_dir, deploy_run, http_dir):
    import keras
    import numpy as np

    from serving.images import load_image, scale

    model_path = deploy_run / "tiny.keras"  # a user's own model: the load path, not the model, is under test
    load = {"train.mode": "load", "train.min_load_accuracy": 0.0}
    project = load_project(tmp_path, dataset_dir, **load, **{"train.load_from": str(model_path)})
    url = http_dir(model_path.parent) + "/tiny.keras"
    by_url = load_project(tmp_path / "url", dataset_dir, **load, **{"train.load_from": url})
    stages_in_one_process(["train"], [project, by_url])  # TensorFlow imported once for both
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["source"] == "load" and info["input_size"] == 75
    assert (by_url / "data/download/models/tiny.keras").read_bytes() == model_path.read_bytes()

    # The same photos through the saved model and both loaded ones: the same logits, and the stage's
    # validation accuracy is what those logits give against each photo's folder.
    photos = split_photos(project, "validation")
    x = scale(np.stack([load_image(p, 75) for p in photos]))
    logits = {
        name: keras.models.load_model(path, compile=False).predict(x, batch_size=32, verbose=0)
        for name, path in [
            ("saved", model_path),
            ("file", project / "artifacts/model/model.keras"),
            ("url", by_url / "artifacts/model/model.keras"),
        ]
    }
    assert np.ptp(logits["saved"], axis=0).max() > 0.01  # logits that vary from photo to photo
    np.testing.assert_allclose(logits["file"], logits["saved"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(logits["url"], logits["saved"], rtol=0, atol=1e-6)
    folders = [Path(p).parent.name for p in photos]
    accuracy = np.mean(np.array(LABELS)[logits["saved"].argmax(1)] == np.array(folders))
    assert info["val_accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_load_errors_are_one_line(tmp_path, dataset_dir, deploy_run):
    model_path = str(deploy_run / "tiny.keras")
    cases = [
        ({"train.load_from": str(tmp_path / "missing.keras")}, "no model file at"),
        ({"train.load_from": "http://127.0.0.1:9/model.keras"}, "cannot download http://127.0.0.1:9/model.keras"),
        ({"train.load_from": model_path, "train.min_load_accuracy": 0.99}, "classes in another order"),
        ({"train.load_from": str(deploy_run / "params.yaml")}, "cannot load a Keras model"),
    ]
    for i, (overrides, message) in enumerate(cases):
        project = load_project(tmp_path / str(i), dataset_dir, **{"train.mode": "load", **overrides})
        result = stage("train", project, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
