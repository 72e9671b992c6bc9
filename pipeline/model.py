"""The Keras Xception classifier: build it (from scratch or ImageNet) or load an existing one."""

from pathlib import Path

import keras
from keras import layers

from pipeline import cli, files
from serving.labels import LABELS

# The ReLUs that follow each residual Add (blocks 3-13). In a full-int8 TFLite graph they stay
# stand-alone int8 RELU ops that XNNPACK rejects, splitting the graph into 12 partitions;
# LeakyReLU keeps the whole graph in the delegate (docs/toolchain.md).
RESIDUAL_RELUS = {f"block{i}_sepconv1_act" for i in range(3, 14)}
LEAKY_SLOPE = 0.01


def resolve_weights(weights: str, imagenet_url: str, cache_dir: Path) -> "str | None":
    """none -> None; imagenet -> a cached download; anything else must be a local weights file."""
    if weights == "none":
        return None
    if weights == "imagenet":
        try:
            return str(files.download(imagenet_url, cache_dir / Path(imagenet_url).name))
        except cli.UserError as e:
            raise cli.UserError(
                f"ImageNet weights could not be downloaded ({e}). Set train.<recipe>.weights to a local "
                "Xception include_top=False weights file, or to none to train from scratch"
            ) from None
    if not Path(weights).is_file():
        raise cli.UserError(f"train.<recipe>.weights: no weights file at {weights!r} (or use none / imagenet)")
    return weights


def weights_kind(weights: str) -> str:
    return weights if weights in ("none", "imagenet") else f"file:{Path(weights).name}"


def build_model(
    input_size: "int | None",
    weights: "str | None",
    residual_activation: str,
    dense_size: int,
    dropout: float,
    freeze_base: bool,
    bn_momentum: float = 0.99,
) -> keras.Model:
    """Xception base + global average pooling + head. Outputs logits for the 10 labels.
    input_size None takes any size (progressive resizing trains one model at several)."""
    try:
        base = keras.applications.Xception(include_top=False, weights=weights, input_shape=(input_size, input_size, 3))
    except (ValueError, OSError) as e:
        raise cli.UserError(f"train.<recipe>.weights: cannot load {weights}: {e}") from None
    if residual_activation == "leaky_relu":
        base = swap_residual_relus(base)
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
    head.add(layers.Dense(len(LABELS), name="logits", dtype="float32"))

    inputs = keras.Input((input_size, input_size, 3), name="image")
    # A frozen base keeps BatchNorm in inference mode, also while the head trains on top of it.
    x = base(inputs, training=False) if freeze_base else base(inputs)
    features = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, head(features), name="xception_clothes")


def swap_residual_relus(base: keras.Model) -> keras.Model:
    def clone(layer):
        if layer.name in RESIDUAL_RELUS:
            return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    swapped = keras.models.clone_model(base, clone_function=clone)
    swapped.set_weights(base.get_weights())
    return swapped


class LegacySeparableConv2D(layers.SeparableConv2D):
    """tf.keras 2 writes keys into SeparableConv2D's config that Keras 3 refuses; they only hold
    values Keras 3 ignores for this layer, so drop them."""

    def __init__(
        self, *args, groups=1, kernel_initializer=None, kernel_regularizer=None, kernel_constraint=None, **kwargs
    ):
        super().__init__(*args, **kwargs)


def _standard_layers(model: keras.Model) -> keras.Model:
    """The same model with plain Keras layers only, so the saved .keras needs no custom code."""

    def clone(layer):
        if isinstance(layer, LegacySeparableConv2D):
            return layers.SeparableConv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    standard = keras.models.clone_model(model, clone_function=clone)
    standard.set_weights(model.get_weights())
    return standard


def load_existing(path: "str | Path") -> keras.Model:
    """A .keras or .h5 model (Keras 3, or Keras 2 / tf.keras h5), checked to fit the 10 labels."""
    legacy = str(path).endswith(".h5")
    try:
        custom = {"SeparableConv2D": LegacySeparableConv2D} if legacy else None
        model = keras.models.load_model(path, compile=False, custom_objects=custom)
        if legacy:
            model = _standard_layers(model)
    except Exception as e:  # Keras raises many types for a bad file; all mean the same to a user
        raise cli.UserError(f"cannot load a Keras model from {path}: {type(e).__name__}: {e}") from None
    shape = model.input_shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise cli.UserError(f"{path}: expected a square RGB image input, got input shape {shape}")
    if model.output_shape[-1] != len(LABELS):
        raise cli.UserError(f"{path}: outputs {model.output_shape[-1]} classes, expected {len(LABELS)}")
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax or isinstance(last, layers.Softmax):
        raise cli.UserError(f"{path}: the model ends in softmax; this pipeline expects logits")
    return model
