import json

import numpy as np
import pytest

from serving.runtime import TFLiteModel
from support import clearest, copy_run, set_params, split_photos, stage

VARIANTS = ["float32", "float16", "dynamic_int8", "full_int8"]


def test_four_variants_with_their_sizes(small_run):
    sizes = json.loads((small_run / "artifacts/metrics/convert.json").read_text())
    files = {v: small_run / "artifacts/tflite" / f"{v}.tflite" for v in VARIANTS}
    for variant, path in files.items():
        assert sizes[variant]["size_mb"] == pytest.approx(path.stat().st_size / 2**20, abs=0.005)  # MiB, 2 decimals
    mb = {v: sizes[v]["size_mb"] for v in VARIANTS}
    assert 75 < mb["float32"] < 85  # 20.9 M float32 weights
    assert 0.45 < mb["float16"] / mb["float32"] < 0.55
    assert 0.2 < mb["dynamic_int8"] / mb["float32"] < 0.3 and 0.2 < mb["full_int8"] / mb["float32"] < 0.3


def test_variants_run_in_litert_with_float_io(small_run):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 75, 75, 3)).astype(np.float32)
    outputs = {}
    for variant in VARIANTS:
        model = TFLiteModel(small_run / "artifacts/tflite" / f"{variant}.tflite", num_threads=2)
        assert model.input["dtype"] == np.float32 and model.input_size == 75
        outputs[variant] = model.logits(x)
        assert outputs[variant].shape == (1, 10) and np.isfinite(outputs[variant]).all()
    assert not np.array_equal(outputs["float32"], outputs["full_int8"])  # really quantized


def test_full_int8_stays_in_one_delegate_partition(small_run):
    # LeakyReLU after the residual Adds (train.residual_activation) keeps XNNPACK on the whole graph.
    coverage = TFLiteModel(small_run / "artifacts/tflite/full_int8.tflite").delegate_coverage()
    assert coverage == {"partitions": 1, "ops_outside_delegate": 0, "outside_ops": {}}
    # Dynamic-range int8 leaves its depthwise convolutions to the built-in kernels.
    dynamic = TFLiteModel(small_run / "artifacts/tflite/dynamic_int8.tflite").delegate_coverage()
    assert dynamic["ops_outside_delegate"] > 0 and "DEPTHWISE_CONV_2D" in dynamic["outside_ops"]


@pytest.mark.heavy  # a second full int8 conversion of the small run's model (~50 s): make test-heavy
def test_plain_relu_full_int8_splits_the_delegate_and_uint8_io(tmp_path, small_run):
    """Two convert options in one conversion: Keras' own Xception ReLUs (the regression the coverage
    numbers exist to catch) and uint8 input and output, on the small run's trained weights."""
    import keras

    from pipeline.model import build_model
    from serving.images import load_image, scale

    project = copy_run(small_run, tmp_path / "p", "tflite", "onnx", "model.keras")
    trained = keras.models.load_model(small_run / "artifacts/model/model.keras", compile=False)
    plain = build_model(10, 75, None, "relu", 0, 0.2, False)  # the small run's architecture, plain ReLU
    plain.set_weights(trained.get_weights())  # LeakyReLU has no weights: the lists match one to one
    plain.save(project / "artifacts/model/model.keras")
    set_params(project, **{"convert.int8_io": "uint8", "convert.variants": ["full_int8"]})
    stage("convert", project)
    model = TFLiteModel(project / "artifacts/tflite/full_int8.tflite")
    coverage = model.delegate_coverage()
    # The 11 int8 ReLUs after the residual Adds run outside XNNPACK, splitting it into 12+ partitions.
    assert coverage["outside_ops"]["RELU"] == 11 and coverage["partitions"] >= 12
    assert model.input["dtype"] == np.uint8 and model.output["dtype"] == np.uint8
    # The calibrating photos span (almost) all of [-1, 1]: 255 uint8 steps of at most 2/255 each.
    assert 1.9 / 255 < model.input["quantization"][0] <= np.float32(2 / 255)
    # Quantized through uint8 I/O, it still answers real photos as the float Keras model does where Keras is
    # clear about its answer (the clearer half of the photos): a briefly trained model's top two classes are
    # often within 0.01 of each other, where int8 may flip them (verify's parity test: the same rule).
    photos = split_photos(small_run)[::5]
    x = scale(np.stack([load_image(photo, 75) for photo in photos]))
    quantized = np.concatenate([model.logits(x[i : i + 1]) for i in range(len(x))]).argmax(1)
    logits = plain.predict(x, verbose=0)
    clear = clearest(logits, 0.5)
    assert np.mean(quantized[clear] == logits.argmax(1)[clear]) >= 0.95


def test_onnx_variants_float32_and_static_qdq_int8(small_run):
    import onnx
    import onnxruntime as ort

    from pipeline import variants
    from serving.runtime import ONNXModel, load_model

    sizes = json.loads((small_run / "artifacts/metrics/convert.json").read_text())
    f32, int8 = (small_run / variants.model_path(v) for v in ("onnx_float32", "onnx_int8"))
    assert sizes["onnx_int8"]["size_mb"] == pytest.approx(int8.stat().st_size / 2**20, abs=0.005)
    assert 75 < sizes["onnx_float32"]["size_mb"] < 85 and 0.2 < int8.stat().st_size / f32.stat().st_size < 0.35
    graph = onnx.load(str(int8)).graph
    ops = [n.op_type for n in graph.node]
    # QDQ format (not QOperator): QuantizeLinear/DequantizeLinear pairs around float ops.
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50 and "QLinearConv" not in ops
    init = {t.name: t for t in graph.initializer}
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and init.get(n.input[0]) is not None]
    conv_weights = [n for n in weights if len(init[n.input[0]].dims) == 4]
    assert conv_weights and all(init[n.input[0]].data_type == onnx.TensorProto.INT8 for n in conv_weights)
    assert all(len(init[n.input[1]].dims) == 1 for n in conv_weights)  # per-channel scales
    activations = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert all(init[n.input[2]].data_type == onnx.TensorProto.UINT8 for n in activations)  # u8 activations

    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype(np.float32)
    runner = load_model(int8, num_threads=2)
    assert isinstance(runner, ONNXModel) and runner.input_size == 75
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    direct = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(runner.logits(x), direct, rtol=1e-5, atol=1e-5)
    float_logits = load_model(f32).logits(x)
    reference = TFLiteModel(small_run / "artifacts/tflite/float32.tflite").logits(x[:1])
    np.testing.assert_allclose(float_logits[:1], reference, atol=1e-3 * np.abs(reference).max() + 1e-4)
    assert not np.array_equal(direct, float_logits)  # really quantized


def test_worst_layers_ranks_by_error_per_quantization_step():  # imports TensorFlow (convert.py): not fast
    import pandas as pd

    from pipeline.convert import worst_layers

    # RMSE over the scale: a 0.29-step error is rounding's floor, whatever the layer's range.
    stats = pd.DataFrame(
        {
            "tensor_name": ["conv", "add", "logits", "pool"],
            "mean_squared_error": [0.29**2 * 4.0, 0.5**2 * 0.01, 1.08**2 * 0.25, 0.3**2 * 9.0],
            "scale": [2.0, 0.1, 0.5, 3.0],
        }
    )
    assert worst_layers(stats, 2) == ["logits", "add"]  # 1.08 and 0.5 steps; pool 0.3, conv 0.29
    assert worst_layers(stats, 0) == []


@pytest.mark.heavy  # ~1 CPU min: converts with the debugger twice, verifies, probes (make test-heavy)
def test_selective_int8_keeps_the_named_layers_float_and_is_verified_and_benched(tmp_path, small_run):
    """selective_int8 on the small run's model: the layers convert.json names stay float32 in the model
    file, the rest int8; verify gives it an accuracy interval; bench's probe times it in one partition."""
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.bench import probe

    project = copy_run(small_run, tmp_path / "p", "tflite", "onnx")
    set_params(project, **{"convert.variants": ["selective_int8"], "convert.selective_float_layers": 2,
                           "convert.selective_debug_images": 8, "verify.on_gate_failure": "stop",
                           "verify.min_agreement": 0.0})  # fmt: skip
    stage("convert", project)
    kept = json.loads((project / "artifacts/metrics/convert.json").read_text())["selective_int8"]["float_layers"]
    assert len(kept) == 2
    path = project / "artifacts/tflite/selective_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    assert all(dtypes[name] == np.float32 for name in kept)
    assert sum(d == np.int8 for d in dtypes.values()) > 100  # the rest of Xception stays int8
    stage("verify", project)
    m = json.loads((project / "artifacts/metrics/verify.json").read_text())["selective_int8"]
    assert m["accuracy_diff_low"] <= m["accuracy_diff"] <= m["accuracy_diff_high"]
    assert TFLiteModel(path).delegate_coverage()["partitions"] >= 1
    photo = split_photos(small_run)[0]
    assert probe("litert", path, 1, photo, 3, 1)["p50_ms"] > 0
