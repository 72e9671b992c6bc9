"""The Keras Xception classifier: build it (from scratch or ImageNet) or load an existing one."""

from pathlib import Path

import keras
from keras import layers

from pipeline import cli, keras2
from pipeline.relu_swap import swap_residual_relus


def build_model(
    classes: int,
    input_size: "int | None",
    weights: "str | None",
    residual_activation: str,
    dense_size: int,
    dropout: float,
    freeze_base: bool,
    bn_momentum: float = 0.99,
) -> keras.Model:
    """Xception base + global average pooling + head. Outputs logits, one per class.
    input_size None takes any size (progressive resizing trains one model at several)."""
    try:
        base = keras.applications.Xception(include_top=False, weights=weights, input_shape=(input_size, input_size, 3))
    except (ValueError, OSError) as e:
        raise cli.UserError(f"train.<recipe>.weights: cannot load {weights}: {e}") from None
    if residual_activation == "leaky_relu":
        base, _ = swap_residual_relus(base)
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            # Keras' 0.99 needs ~500 steps before inference statistics match training ones.
            layer.momentum = bn_momentum
    base.trainable = not freeze_base

    head = keras.Sequential(name="head")
    if dense_size:
        head.add(layers.Dense(dense_size, activation="relu", name="inner"))
    if dropout:
        head.add(layers.Dropout(dropout, name="dropout"))
    head.add(layers.Dense(classes, name="logits", dtype="float32"))

    inputs = keras.Input((input_size, input_size, 3), name="image")
    # A frozen base keeps BatchNorm in inference mode, also while the head trains on top of it.
    x = base(inputs, training=False) if freeze_base else base(inputs)
    features = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, head(features), name="xception_clothes")


def load_existing(path: "str | Path", kind: str) -> tuple[keras.Model, dict]:
    """A .keras or .h5 model of the format sources.model_format found (Keras 3, or Keras 2 / tf.keras
    h5 of any functional shape: flat, or a base model called as a layer), checked to take a square RGB
    image and give logits; and what was loaded (format, nested models)."""
    try:
        model = keras2.load(path) if kind == "keras2_h5" else keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to a user
        raise cli.UserError(f"cannot load a Keras model from {path}: {type(e).__name__}: {e}") from None
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise cli.UserError(f"{path}: expected a square RGB image input, got input shape {shape}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax or isinstance(last, layers.Softmax):
        raise cli.UserError(f"{path}: the model ends in softmax; this pipeline expects logits")
    return model, {"format": kind, "nested_models": keras2.nested_models(model)}
