"""Training that needs no finished run: augmentation, and transfer learning from ImageNet weights (a local
file, or the download from a local HTTP server). Kept apart from test_train.py, whose tests wait for the
small run, so a worker runs these while the other builds it."""

import json
import sys
from pathlib import Path

import pytest

from support import make_project, run, serve_folder, small_params, stages_in_one_process


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


@pytest.fixture(scope="module")
def transferred(tmp_path_factory, dataset_dir, imagenet_stand_in) -> dict[str, Path]:
    """A transfer-recipe project per weights source (a local file; the ImageNet download, from a local HTTP
    server), trained in one process: {source: project}."""
    weights, _ = imagenet_stand_in
    folder = tmp_path_factory.mktemp("transfer")
    recipe = {"train.recipe": "transfer", "train.transfer.input_size": 75, "train.transfer.epochs": 3}
    recipe |= {"train.residual_activation": "relu"}
    with serve_folder(weights.parent) as url:
        chosen = {
            "file": {"train.transfer.weights": str(weights)},
            "imagenet": {"train.imagenet_url": f"{url}/{weights.name}"},
        }
        projects = {
            source: make_project(folder / source, small_params(dataset_dir, **recipe | overrides))
            for source, overrides in chosen.items()
        }
        stages_in_one_process(["data", "train"], list(projects.values()))
    return projects


@pytest.mark.heavy  # two transfer-learning runs (~100 s of a worker): make test-heavy
@pytest.mark.parametrize("source", ["file", "imagenet"])
def test_transfer_learning_from_a_weights_file_or_the_imagenet_download(transferred, imagenet_stand_in, source):
    import keras
    import numpy as np

    weights, expected = imagenet_stand_in
    project = transferred[source]
    assert "computing base features once" in (project / "stages.log").read_text()
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
