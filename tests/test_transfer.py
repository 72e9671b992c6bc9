"""Training that needs no finished run: augmentation, and transfer learning from ImageNet weights (a local
file, or the download from a local HTTP server). Kept apart from test_train.py, whose tests wait for the
small run, so a worker runs these while the other builds it."""

import json
import sys
from pathlib import Path

import pytest

from conftest import make_project, run, small_params, stage


def load_project(tmp_path, dataset_dir, **overrides):
    project = make_project(tmp_path / "project", small_params(dataset_dir, **overrides))
    stage("data", project)
    return project


def test_augmented_batches_are_random_crops_at_the_epoch_size(dataset_dir):
    import numpy as np

    from pipeline import fit, params
    from serving.images import load_image

    recipe = params.Recipe(**{**small_params(dataset_dir)["train"]["scratch"], "batch_size": 4})
    photos = sorted((dataset_dir / "train/shoes").iterdir())[:4]
    images = np.stack([load_image(p, 86) for p in photos]).astype(np.float32)
    labels = np.arange(4)
    x, y = next(iter(fit.augmented(images, labels, 10, recipe, 71, augment=True, seed=1)))
    assert x.shape == (4, 71, 71, 3) and y.shape == (4, 10)
    again, _ = next(iter(fit.augmented(images, labels, 10, recipe, 71, augment=True, seed=1)))
    assert not np.allclose(x, again)  # a new crop and flip each pass over the data
    plain, y = next(iter(fit.augmented(images, labels, 10, recipe, 86, augment=False, seed=1)))
    order = [int(i) for i in np.argmax(y, axis=1)]  # shuffled; one-hot rows say which photo is where
    np.testing.assert_array_equal(plain, images[order])


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


@pytest.mark.slow
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
