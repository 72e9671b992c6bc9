"""pipeline.fit's training loop on a one-weight-pair model (seconds, no photos): the best epoch's weights are the
ones kept, and the default recipe's warm-up and cosine schedule run as params.yaml says (issue 34)."""

import dataclasses
import math

import numpy as np
import pytest
import yaml

from pipeline import params
from support import ROOT

keras = pytest.importorskip("keras")
fit = pytest.importorskip("pipeline.fit")


def two_class_model(kernel: list) -> "keras.Model":
    """logits = x @ kernel (one input feature, two classes, no bias): which class wins is the sign of x times the
    kernel's order, so a model's accuracy can be read off its two weights."""
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(2, use_bias=False, kernel_initializer=keras.initializers.Constant(kernel)),
        ]
    )
    return model


def default_recipe() -> params.Recipe:
    """params.yaml's scratch recipe (read alone: the rest of the file is not this test's)."""
    return params.Recipe(**yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["scratch"])


def recipe(**changes) -> params.Recipe:
    return dataclasses.replace(default_recipe(), augment=False, train_sizes=[], **changes)


# Training teaches x=+1 -> class 0 and x=-1 -> class 1; validation says the opposite. The model starts agreeing
# with validation (kernel [-0.5, 0.5]: x=+1 -> class 1), so validation accuracy is 1.0 until training has moved
# the weights past each other, then 0.0: the best epoch is an early one, never the last.
X = np.array([[1.0], [-1.0], [1.0], [-1.0]], dtype=np.float32)
TRAIN_Y, VAL_Y = np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])


def accuracy(model, x, y) -> float:
    """By hand from the weights: argmax of x @ kernel."""
    [kernel] = model.get_weights()
    return float(np.mean(np.argmax(x @ kernel, axis=1) == y))


def test_the_kept_model_is_the_best_validation_epoch_s_not_the_last():
    # Fails if fit() stops restoring the best epoch's weights (model.set_weights(keep.best_weights) removed): the
    # last epoch's model gets validation accuracy 0.0 here.
    keras.utils.set_random_seed(0)
    model = two_class_model([[-0.5, 0.5]])
    p = recipe(epochs=6, batch_size=4, learning_rate=0.3, warmup_epochs=0, weight_decay=0.0, label_smoothing=0.0)
    keep = fit.KeepBest()
    fit.fit(model, (X, TRAIN_Y), (X, VAL_Y), p, 0, keep, features=True)
    history = [row["val_accuracy"] for row in keep.rows]
    assert history[0] == 1.0 and history[-1] == 0.0, history  # the set-up did what it says
    assert keep.best_epoch < p.epochs
    assert accuracy(model, X, VAL_Y) == keep.best_accuracy == 1.0


def test_the_default_recipe_warms_up_then_decays_to_zero():
    # params.yaml's scratch recipe as it trains by default (warmup_epochs 1): the learning rate starts at 0, reaches
    # learning_rate after the warm-up's steps, then follows a cosine to 0 at the last step. One step an epoch here
    # (4 photos, batch 32), so epoch e ends at step e: lr = lr0 / 2 * (1 + cos(pi * (e - warmup) / (epochs - warmup)))
    # after the warm-up. Fails if the warm-up is dropped (epoch 1 would end below lr0) or the decay is not cosine.
    assert default_recipe().warmup_epochs >= 1  # what this test is about
    p = recipe()
    keep = fit.KeepBest()
    fit.fit(two_class_model([[0.5, -0.5]]), (X, TRAIN_Y), (X, TRAIN_Y), p, 0, keep, features=True)
    lr0, w, n = p.learning_rate, p.warmup_epochs, p.epochs
    expected = [
        lr0 * e / w if e < w else lr0 / 2 * (1 + math.cos(math.pi * (e - w) / (n - w))) for e in range(1, n + 1)
    ]
    assert [row["learning_rate"] for row in keep.rows] == pytest.approx(expected, abs=1e-7)
    assert len(keep.rows) == n and keep.rows[-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)
