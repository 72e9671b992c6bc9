import http.server
import json
import subprocess
import sys
import threading
from functools import partial

import pandas as pd
import pytest

from conftest import make_project, small_params, stage


def load_project(tmp_path, dataset_dir, **overrides):
    project = make_project(tmp_path / "project", small_params(dataset_dir, **overrides))
    stage("data", project)
    return project


@pytest.fixture
def http_dir():
    """Serve a folder over HTTP on 127.0.0.1; yields a function folder -> base URL."""
    servers = []

    def serve(folder):
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()


def test_small_training_run(small_run):
    info = json.loads((small_run / "artifacts/model/info.json").read_text())
    assert info["source"] == "train" and info["weights"] == "none" and info["input_size"] == 75
    assert info["epochs"] == 4 and 1 <= info["best_epoch"] <= 4
    history = pd.read_csv(small_run / "artifacts/model/history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["val_accuracy"].max() == pytest.approx(info["val_accuracy"], abs=1e-4)
    metrics = json.loads((small_run / "artifacts/metrics/train.json").read_text())
    assert metrics["weights"] == "none"


def test_load_from_keras_file_and_from_url(tmp_path, dataset_dir, small_run, http_dir):
    trained = json.loads((small_run / "artifacts/model/info.json").read_text())
    model_path = small_run / "artifacts/model/model.keras"
    project = load_project(
        tmp_path,
        dataset_dir,
        **{"train.mode": "load", "train.load_from": str(model_path), "train.min_load_accuracy": 0.0},
    )
    stage("train", project)
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["source"] == "load" and info["input_size"] == 75
    # The same weights on the same validation images: bf16 training vs float32 evaluation may differ slightly.
    assert info["val_accuracy"] == pytest.approx(trained["val_accuracy"], abs=0.05)

    url = http_dir(model_path.parent) + "/model.keras"
    by_url = load_project(
        tmp_path / "url", dataset_dir, **{"train.mode": "load", "train.load_from": url, "train.min_load_accuracy": 0.0}
    )
    stage("train", by_url)
    assert (by_url / "data/download/models/model.keras").stat().st_size == model_path.stat().st_size
    assert json.loads((by_url / "artifacts/model/info.json").read_text())["val_accuracy"] == info["val_accuracy"]


def test_load_errors_are_one_line(tmp_path, dataset_dir, small_run):
    model_path = str(small_run / "artifacts/model/model.keras")
    cases = [
        ({"train.load_from": str(tmp_path / "missing.keras")}, "no model file at"),
        ({"train.load_from": "http://127.0.0.1:9/model.keras"}, "cannot download http://127.0.0.1:9/model.keras"),
        ({"train.load_from": model_path, "train.min_load_accuracy": 0.99}, "classes in another order"),
        ({"train.load_from": str(small_run / "params.yaml")}, "cannot load a Keras model"),
    ]
    for i, (overrides, message) in enumerate(cases):
        project = load_project(tmp_path / str(i), dataset_dir, **{"train.mode": "load", **overrides})
        result = stage("train", project, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


KERAS2_H5 = """
import sys, tf_keras as k
base = k.applications.Xception(include_top=False, weights=None, input_shape=(75, 75, 3))
x = k.layers.GlobalAveragePooling2D()(base.output)
x = k.layers.Dense(16, activation="relu")(x)
model = k.Model(base.input, k.layers.Dense(10)(k.layers.Dropout(0.2)(x)))
model.save(sys.argv[1])
"""


def test_load_a_keras2_h5_file(tmp_path, dataset_dir):
    h5 = tmp_path / "xception_v4_small.h5"
    subprocess.run([sys.executable, "-c", KERAS2_H5, str(h5)], check=True, capture_output=True)
    project = load_project(
        tmp_path, dataset_dir, **{"train.mode": "load", "train.load_from": str(h5), "train.min_load_accuracy": 0.0}
    )
    stage("train", project)
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["source"] == "load" and info["parameters"] == 20_861_480 + 16 * 2048 + 16 + 170


def test_imagenet_download_failure_names_the_param(tmp_path, monkeypatch):
    from pipeline import model
    from pipeline.cli import UserError

    monkeypatch.setattr(model, "XCEPTION_NOTOP_URL", "http://127.0.0.1:9/xception_notop.h5")
    with pytest.raises(UserError, match="Set train.weights to a local"):
        model.resolve_weights("imagenet", tmp_path)


def test_transfer_learning_from_a_local_weights_file(tmp_path, dataset_dir):
    import keras
    import numpy as np

    weights = tmp_path / "xception_notop.weights.h5"
    base = keras.applications.Xception(include_top=False, weights=None, input_shape=(75, 75, 3))
    base.save_weights(weights)
    project = load_project(
        tmp_path,
        dataset_dir,
        **{
            "train.weights": str(weights),
            "train.transfer.input_size": 75,
            "train.transfer.epochs": 3,
            "train.residual_activation": "relu",
        },
    )
    result = stage("train", project)
    assert "computing base features once" in result.stdout
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["weights"] == "file:xception_notop.weights.h5"
    trained = keras.models.load_model(project / "artifacts/model/model.keras", compile=False)
    kernel = trained.get_layer("xception").get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_array_equal(kernel, base.get_layer("block1_conv1").get_weights()[0])
