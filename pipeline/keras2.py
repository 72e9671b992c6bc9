"""Keras 2 / tf.keras .h5 model files read into an equivalent Keras 3 model (same layers, same weights).

Keras 3 reads a Keras 2 .h5 itself except for two things its config holds differently:
- a nested model (an Xception base called on a new Input, as the original service's notebook built it)
  is referenced as node 1 of that model: tf.keras counts the nested model's own construction as its
  node 0, Keras 3 does not, and fails with "The graph of the Functional model either has loops or
  disconnected nodes";
- SeparableConv2D configs carry keys Keras 3 refuses (groups, kernel_*) whose values it ignores anyway.
The config is fixed in a copy of the file, which Keras 3 then loads with its own .h5 loader."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import h5py
import keras

MODEL_CLASSES = {"Functional", "Model", "Sequential"}
# Keys tf.keras writes into SeparableConv2D's config that Keras 3 refuses; they hold values the layer never used.
SEPARABLE_EXTRA_KEYS = ("groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint")


def _skips_first_node(layer: dict) -> bool:
    """tf.keras gives a nested model with an Input a node 0 of its own; calls on it start at node 1."""
    if layer.get("class_name") not in MODEL_CLASSES:
        return False
    inner = layer["config"].get("layers", [])
    return layer["class_name"] != "Sequential" or bool(inner and inner[0].get("class_name") == "InputLayer")


def _renumber(refs, nested: set) -> None:
    """[name, node, tensor(, kwargs)] references, nested in lists: node - 1 where name is a nested model."""
    if isinstance(refs, list) and len(refs) >= 3 and isinstance(refs[0], str) and isinstance(refs[1], int):
        if refs[0] in nested and refs[1] > 0:
            refs[1] -= 1
        return
    if isinstance(refs, list):
        for item in refs:
            _renumber(item, nested)


def keras3_config(config: dict) -> dict:
    """A Keras 2 model config rewritten the way Keras 3 reads it (see the module's docstring)."""
    config = copy.deepcopy(config)
    _fix(config)
    return config


def _fix(model: dict) -> None:
    layers = model["config"].get("layers", []) if isinstance(model.get("config"), dict) else []
    nested = {layer["config"]["name"] for layer in layers if _skips_first_node(layer)}
    for layer in layers:
        if layer.get("class_name") in MODEL_CLASSES:
            _fix(layer)
        if layer.get("class_name") == "SeparableConv2D":
            for key in SEPARABLE_EXTRA_KEYS:
                layer["config"].pop(key, None)
        if nested:
            _renumber(layer.get("inbound_nodes", []), nested)
    if nested:
        _renumber(model["config"].get("output_layers", []), nested)


def nested_models(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, keras.Model)]


def load(path: "str | Path") -> keras.Model:
    """A Keras 3 model from a Keras 2 / tf.keras whole-model .h5 file."""
    with tempfile.TemporaryDirectory() as tmp:
        fixed = Path(tmp) / "model.h5"
        shutil.copyfile(path, fixed)
        with h5py.File(fixed, "r+") as f:
            config = f.attrs["model_config"]
            config = json.loads(config.decode() if isinstance(config, bytes) else config)
            f.attrs["model_config"] = json.dumps(keras3_config(config))
        return keras.models.load_model(fixed, compile=False)
