import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, clearest, copy_run, set_params, softmax, split_photos, stage
from serving.images import load_image, scale


def test_parity_numbers_on_real_test_images(small_run):
    metrics = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    # A parity check is only meaningful when the model's classes are told apart (TOOLCHAIN trap).
    assert metrics["keras"]["logit_spread"] > 0.05
    assert metrics["keras"]["weights"] == "none"
    assert metrics["float32"]["agreement"] == 1.0 and metrics["float32"]["max_abs_prob_diff"] < 1e-3
    assert metrics["float16"]["max_abs_prob_diff"] < 0.02
    # ONNX Runtime float32 computes the same function in another order of operations.
    assert metrics["onnx_float32"]["agreement"] >= 0.99 and metrics["onnx_float32"]["max_abs_prob_diff"] < 1e-3
    for variant in ("dynamic_int8", "full_int8", "onnx_int8"):
        assert 0 < metrics[variant]["max_abs_prob_diff"] < 0.5
    # Both int8s lose at most a few points of accuracy against Keras on this small run.
    for variant in ("full_int8", "onnx_int8"):
        assert metrics[variant]["accuracy"] >= metrics["keras"]["accuracy"] - 0.1
    assert metrics["onnx_int8"]["size_mb"] < 0.35 * metrics["onnx_float32"]["size_mb"]

    # Expectations of our own, not verify's: each photo's label is its folder's name, and Keras' answers
    # are recomputed here from model.keras on the manifest's test photos.
    photos = split_photos(small_run)
    folder_labels = np.array([Path(photo).parent.name for photo in photos])
    keras_top = np.array(LABELS)[keras_logits(small_run, photos).argmax(1)]
    assert metrics["test_images"] == len(photos)
    assert metrics["keras"]["accuracy"] == pytest.approx(np.mean(keras_top == folder_labels), abs=1e-4)
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    assert len(predictions) == 7 * len(photos)
    for model, rows in predictions.groupby("model"):
        rows = rows.set_index("path").loc[photos]
        truth = rows.index.map(lambda photo: Path(photo).parent.name)
        assert metrics[model]["accuracy"] == pytest.approx(np.mean(rows["predicted"] == truth), abs=1e-4)
        probs = rows[[f"p_{label}" for label in LABELS]].to_numpy()
        assert abs(probs.sum(axis=1) - 1).max() < 1e-4
        # The CSV holds 6 decimals: the predicted class's probability is the row's highest to that precision
        # (a tie after rounding may put argmax on another column).
        chosen = probs[np.arange(len(probs)), [LABELS.index(label) for label in rows["predicted"]]]
        assert (chosen >= probs.max(axis=1) - 1e-6).all(), model
    keras_rows = predictions[predictions["model"] == "keras"].set_index("path").loc[photos]
    assert (keras_rows["predicted"].to_numpy() == keras_top).all()
    # The paired counts the accuracy gates judge: photos only Keras / only the variant gets right, by the folders.
    keras_right = keras_top == folder_labels
    for variant in ("float32", "float16", "dynamic_int8", "full_int8", "onnx_float32", "onnx_int8"):
        right = predictions[predictions["model"] == variant].set_index("path").loc[photos]["predicted"] == folder_labels
        m, right = metrics[variant], right.to_numpy()
        assert (m["keras_only"], m["variant_only"]) == ((keras_right & ~right).sum(), (~keras_right & right).sum())
        assert m["accuracy_diff"] == round((m["variant_only"] - m["keras_only"]) / len(photos), 4)
        assert m["accuracy_diff_low"] <= m["accuracy_diff"] <= m["accuracy_diff_high"]
    assert metrics["confidence"] == 0.95
    # The int8 variants keep Keras' answer where Keras is clear about it: on the quarter of photos where
    # its top class leads the second by most. Agreement over all photos is no fixed bound for a model
    # trained this briefly: its top two classes are often within 0.01 of each other (median lead 0.02),
    # and fresh clones measured 0.79 to 0.97.
    clear = clearest(keras_rows[[f"p_{label}" for label in LABELS]].to_numpy(), 0.25)
    for variant in ("dynamic_int8", "full_int8", "onnx_int8"):
        rows = predictions[predictions["model"] == variant].set_index("path").loc[photos]
        agreement = np.mean(rows["predicted"].to_numpy()[clear] == keras_top[clear])
        assert agreement >= 0.95, (variant, agreement)
    per_class = pd.read_csv(small_run / "artifacts/verify/per_class.csv").set_index("class")
    assert list(per_class.columns) == [
        "keras", "float32", "float16", "dynamic_int8", "full_int8", "onnx_float32", "onnx_int8"
    ]  # fmt: skip
    assert list(per_class.index) == list(LABELS)
    for label in LABELS:
        mine = keras_top[folder_labels == label]
        assert per_class.loc[label, "keras"] == pytest.approx(np.mean(mine == label), abs=1e-4), label


def test_float_variants_predictions_are_their_runtimes_own_answers(small_run):
    """verify's predictions.csv for float32 (LiteRT) and onnx_float32 (ONNX Runtime), recomputed here with
    each runtime's own API on the manifest's test photos, not through serving.runtime that verify uses."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    photos = split_photos(small_run)[::5]  # a bug shared by both runtime paths shows on any photo
    interpreter = Interpreter(model_path=str(small_run / "artifacts/tflite/float32.tflite"), num_threads=1)
    interpreter.allocate_tensors()
    (tensor_in,), (tensor_out,) = interpreter.get_input_details(), interpreter.get_output_details()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the suite's other workers hold the other core
    session = onnxruntime.InferenceSession(small_run / "artifacts/onnx/onnx_float32.onnx", options)
    name = session.get_inputs()[0].name
    lite, onnx = [], []
    for photo in photos:
        x = scale(load_image(photo, int(tensor_in["shape"][1]))[None]).astype(np.float32)
        interpreter.set_tensor(tensor_in["index"], x)
        interpreter.invoke()
        lite.append(interpreter.get_tensor(tensor_out["index"])[0])
        onnx.append(session.run(None, {name: x})[0][0])
    predictions = pd.read_csv(small_run / "artifacts/verify/predictions.csv")
    for model, logits in (("float32", lite), ("onnx_float32", onnx)):
        probs = softmax(logits)
        rows = predictions[predictions["model"] == model].set_index("path").loc[photos]
        # The CSV holds 6 decimals (5e-7 of rounding); the rest is float32 arithmetic of one model file.
        np.testing.assert_allclose(rows[[f"p_{label}" for label in LABELS]].to_numpy(), probs, atol=2e-6)
        assert (rows["predicted"].to_numpy() == np.array(LABELS)[probs.argmax(1)]).all(), model


def keras_logits(project: Path, photos: list[str]) -> np.ndarray:
    import keras

    model = keras.models.load_model(project / "artifacts/model/model.keras", compile=False)
    size = model.input_shape[1]
    return model.predict(scale(np.stack([load_image(photo, size) for photo in photos])), batch_size=32, verbose=0)


@pytest.mark.long
def test_a_failing_gate_stops_the_stage_with_the_reason(tmp_path, small_run):
    """Keras' logits rolled by one class: every variant (converted from the original) disagrees with it on
    (nearly) every photo, whatever training gave - the gate fails for a known reason."""
    import keras

    project = copy_run(small_run, tmp_path / "p", "tflite", "onnx", "model.keras")
    (project / "artifacts/tflite").symlink_to(small_run / "artifacts/tflite")  # read only, as converted
    model = keras.models.load_model(small_run / "artifacts/model/model.keras", compile=False)
    logits = model.get_layer("head").get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])
    model.save(project / "artifacts/model/model.keras")
    set_params(project, **{"verify.min_agreement": 0.95, "convert.variants": ["float32", "full_int8"]})
    (project / "artifacts/metrics/verify.json").unlink()
    result = stage("verify", project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "verification failed" in result.stderr and "verify.min_agreement 0.95" in result.stderr
    assert "float32: top-1 agreement 0.0 < verify.min_agreement 0.95" in result.stderr
    # full int8 agrees with the rolled Keras only where quantization itself moved its top class onto
    # the rolled one (a photo or two of 245: 0.0041 seen), far under the gate.
    assert re.search(r"full_int8: top-1 agreement 0\.0\d* < verify.min_agreement 0.95", result.stderr)
    # The metrics are written before the gate fails: the numbers that failed are there to read.
    written = json.loads((project / "artifacts/metrics/verify.json").read_text())
    assert written["float32"]["agreement"] == 0.0 and written["full_int8"]["agreement"] < 0.1


def roll_outputs(source: Path, dest: Path) -> None:
    """The ONNX model's class scores moved one class along (a Gather after its output): a variant that
    disagrees with Keras on every photo, while the TFLite ones stay as converted."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(source)
    graph = model.graph
    out = graph.output[0].name
    classes = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    for node in graph.node:
        node.output[:] = [f"{o}_unrolled" if o == out else o for o in node.output]
    order = np.array([(i - 1) % classes for i in range(classes)], dtype=np.int64)
    graph.initializer.append(numpy_helper.from_array(order, "rolled_order"))
    graph.node.append(helper.make_node("Gather", [f"{out}_unrolled", "rolled_order"], [out], axis=1))
    onnx.save(model, dest)


@pytest.mark.long
def test_a_variant_that_misses_a_gate_is_excluded_and_the_others_go_on(tmp_path, small_run, monkeypatch):
    """verify.on_gate_failure exclude: the stage passes with the others, verify.json says why, and
    what bench measures and what deploy ships leave the excluded variant out."""
    from pipeline import gates, params, release
    from pipeline.deploy import build
    from pipeline.deploy.errors import VariantExcluded

    project = copy_run(small_run, tmp_path / "p", "onnx")
    (project / "artifacts/onnx").mkdir()
    roll_outputs(small_run / "artifacts/onnx/onnx_float32.onnx", project / "artifacts/onnx/onnx_float32.onnx")
    shutil.copy(small_run / "artifacts/onnx/onnx_float32.json", project / "artifacts/onnx/onnx_float32.json")
    gate = {"verify.min_agreement": 0.95, "verify.on_gate_failure": "exclude"}
    set_params(project, **gate, **{"convert.variants": ["float32", "onnx_float32"], "deploy.variant": "onnx_float32"})
    result = stage("verify", project)
    reason = "onnx_float32: top-1 agreement 0.0 < verify.min_agreement 0.95"
    assert reason in result.stdout + result.stderr
    written = json.loads((project / "artifacts/metrics/verify.json").read_text())
    assert written["excluded"] == {"onnx_float32": reason}
    assert written["float32"]["agreement"] > 0.95 and written["onnx_float32"]["agreement"] == 0.0
    monkeypatch.chdir(project)
    p = params.load()
    assert gates.not_excluded(p.convert.variants, written) == ["float32"]  # what bench measures
    release.write(release.describe("float32", p.convert.variants, written, {}, release.read_predictions()))
    with pytest.raises(VariantExcluded, match=re.escape(f"onnx_float32 was excluded at verify ({reason})")):
        build.chosen_model(p.deploy)
