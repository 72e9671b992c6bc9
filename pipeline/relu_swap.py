"""Xception's residual ReLUs swapped for LeakyReLU: what keeps a full-int8 graph in one XNNPACK partition.

In a full-int8 TFLite graph the plain ReLUs that follow each residual Add (blocks 3-13) stay stand-alone
int8 RELU ops that XNNPACK rejects: the graph splits into 12 delegate partitions and those ops run on
the slow built-in kernel (docs/toolchain.md). LeakyReLU with a slope of 0.004-0.01 fuses; 0.001
or 0 is rejected too. On a model trained with ReLU the swap is an approximation (negative inputs now
leak slope x input): verify's gates measure what it costs."""

import keras
from keras import layers

RESIDUAL_RELUS = frozenset(f"block{i}_sepconv1_act" for i in range(3, 14))
DEFAULT_SLOPE = 0.01


def is_plain_relu(layer) -> bool:
    if isinstance(layer, layers.Activation):
        return layer.get_config()["activation"] == "relu"
    if isinstance(layer, layers.ReLU):
        c = layer.get_config()
        return c.get("max_value") is None and not c.get("negative_slope") and not c.get("threshold")
    return False


def swap_residual_relus(model: keras.Model, slope: float = DEFAULT_SLOPE) -> tuple[keras.Model, int]:
    """The same model (same weights) with the residual ReLUs as LeakyReLU(slope), in nested models too
    (an Xception base called as a layer); and how many were swapped (0: none to swap, same model)."""
    swapped = 0

    def clone(layer):
        nonlocal swapped
        if isinstance(layer, keras.Model):
            inner, n = swap_residual_relus(layer, slope)
            swapped += n
            return inner
        if layer.name in RESIDUAL_RELUS and is_plain_relu(layer):
            swapped += 1
            return layers.LeakyReLU(negative_slope=slope, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    clone_model = keras.models.clone_model(model, clone_function=clone)
    if not swapped:
        return model, 0
    clone_model.set_weights(model.get_weights())
    return clone_model, swapped
