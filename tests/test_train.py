import http.server
import json
import sys
import threading
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from conftest import LABELS, make_project, run, small_params, stage


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


def test_small_training_run_with_progressive_resizing(small_run):
    info = json.loads((small_run / "artifacts/model/info.json").read_text())
    assert info["source"] == "train" and info["weights"] == "none" and info["input_size"] == 75
    assert info["train_sizes"] == [71] and info["epochs"] == 6
    # mixed_precision is on in params: bfloat16 only where the CPU computes it (emulated, it is ~10x slower)
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert info["precision"] == ("mixed_bfloat16" if native else "float32")
    assert ("no AVX512-BF16 or AMX on this CPU" in (small_run / "repro.log").read_text()) == (not native)
    history = pd.read_csv(small_run / "artifacts/model/history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5, 6]
    # The early epochs train smaller: half of them at the one train size, then the input size.
    assert list(history["size"]) == [71, 71, 71, 75, 75, 75]
    assert "epochs 1-3 at 71 px" in (small_run / "repro.log").read_text()
    # The kept weights are the best validation epoch's (training itself is not reproducible to the bit).
    best = history.loc[history["val_accuracy"].idxmax()]
    assert info["best_epoch"] == best["epoch"] and info["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    metrics = json.loads((small_run / "artifacts/metrics/train.json").read_text())
    assert metrics["weights"] == "none" and metrics["recipe"] == "scratch"
    assert metrics["val_accuracy"] == info["val_accuracy"]


def test_augmented_batches_are_random_crops_at_the_epoch_size(dataset_dir):
    import numpy as np

    from pipeline import fit, params
    from serving.images import load_image

    recipe = params.Recipe(**{**small_params(dataset_dir)["train"]["scratch"], "batch_size": 4})
    photos = sorted((dataset_dir / "train/shoes").iterdir())[:4]
    images = np.stack([load_image(p, 86) for p in photos]).astype(np.float32)
    labels = np.arange(4)
    x, y = next(iter(fit.augmented(images, labels, 4, recipe, 71, augment=True, seed=1)))
    assert x.shape == (4, 71, 71, 3) and y.shape == (4, 10)
    again, _ = next(iter(fit.augmented(images, labels, 4, recipe, 71, augment=True, seed=1)))
    assert not np.allclose(x, again)  # a new crop and flip each pass over the data
    plain, y = next(iter(fit.augmented(images, labels, 4, recipe, 86, augment=False, seed=1)))
    order = [int(i) for i in np.argmax(y, axis=1)]  # shuffled; one-hot rows say which photo is where
    np.testing.assert_array_equal(plain, images[order])


def test_load_from_keras_file_and_from_url(tmp_path, dataset_dir, small_run, http_dir):
    import keras
    import numpy as np

    from serving.images import load_image, scale

    model_path = small_run / "artifacts/model/model.keras"
    project = load_project(
        tmp_path,
        dataset_dir,
        **{"train.mode": "load", "train.load_from": str(model_path), "train.min_load_accuracy": 0.0},
    )
    stage("train", project)
    info = json.loads((project / "artifacts/model/info.json").read_text())
    assert info["source"] == "load" and info["input_size"] == 75

    url = http_dir(model_path.parent) + "/model.keras"
    by_url = load_project(
        tmp_path / "url", dataset_dir, **{"train.mode": "load", "train.load_from": url, "train.min_load_accuracy": 0.0}
    )
    stage("train", by_url)
    assert (by_url / "data/download/models/model.keras").read_bytes() == model_path.read_bytes()

    # The same photos through the saved model and both loaded ones: the same logits, and the stage's
    # validation accuracy is what those logits give against each photo's folder.
    manifest = pd.read_csv(project / "data/manifest.csv")
    photos = manifest[manifest["split"] == "validation"]["path"].tolist()
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


def test_imagenet_download_failure_names_the_param(tmp_path):
    from pipeline import sources
    from pipeline.cli import UserError

    with pytest.raises(UserError, match="Set train.<recipe>.weights to a local"):
        sources.resolve_weights("imagenet", "http://127.0.0.1:9/xception_notop.h5", tmp_path)


# Keras' ImageNet file is a Keras 2 weights-only .h5 (layer_names/weight_names attributes), which Keras 3
# reads through its legacy loader: write the stand-in the same way, with random but non-default statistics.
IMAGENET_STAND_IN = """
import sys, numpy as np, tf_keras as k
base = k.applications.Xception(include_top=False, weights=None, input_shape=(75, 75, 3))
bn = base.get_layer("block14_sepconv2_bn")
gamma, beta, mean, variance = bn.get_weights()
bn.set_weights([gamma, beta, mean + 0.1, variance * 2.0])
base.save_weights(sys.argv[1])
np.savez(sys.argv[2], block1_conv1=base.get_layer("block1_conv1").get_weights()[0], moving_variance=variance * 2.0)
"""


@pytest.fixture(scope="module")
def imagenet_stand_in(tmp_path_factory) -> tuple[Path, dict]:
    """Stands in for Keras' ImageNet download: a Keras 2 weights file, by tf_keras, under the real file's
    name; and the values the trained model must carry over from it. Made once for both sources."""
    import numpy as np

    served = tmp_path_factory.mktemp("served")
    weights = served / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    run([sys.executable, "-c", IMAGENET_STAND_IN, str(weights), str(served / "expected.npz")], served)
    return weights, dict(np.load(served / "expected.npz"))


@pytest.mark.parametrize("source", ["file", "imagenet"])
def test_transfer_learning_from_a_weights_file_or_the_imagenet_download(
    tmp_path, dataset_dir, http_dir, imagenet_stand_in, source
):
    import keras
    import numpy as np

    weights, expected = imagenet_stand_in
    served = weights.parent
    if source == "file":
        chosen = {"train.recipe": "transfer", "train.transfer.weights": str(weights)}
    else:
        chosen = {"train.recipe": "transfer", "train.imagenet_url": f"{http_dir(served)}/{weights.name}"}
    project = load_project(
        tmp_path,
        dataset_dir,
        **chosen,
        **{"train.transfer.input_size": 75, "train.transfer.epochs": 3, "train.residual_activation": "relu"},
    )
    result = stage("train", project)
    assert "computing base features once" in result.stdout
    info = json.loads((project / "artifacts/model/info.json").read_text())
    metrics = json.loads((project / "artifacts/metrics/train.json").read_text())
    kind = f"file:{weights.name}" if source == "file" else "imagenet"
    assert info["weights"] == metrics["weights"] == kind and metrics["recipe"] == "transfer"
    assert info["epochs"] == 3 and info["input_size"] == 75
    if source == "imagenet":
        cached = project / "data/download" / weights.name
        assert cached.read_bytes() == weights.read_bytes()
    trained = keras.models.load_model(project / "artifacts/model/model.keras", compile=False)
    base = trained.get_layer("xception")
    np.testing.assert_array_equal(base.get_layer("block1_conv1").get_weights()[0], expected["block1_conv1"])
    np.testing.assert_array_equal(base.get_layer("block14_sepconv2_bn").get_weights()[3], expected["moving_variance"])
    assert trained.get_layer("head").get_layer("inner").units == 100  # the transfer recipe's Dense 100
