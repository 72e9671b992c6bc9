"""verify's gates: a variant that disagrees with Keras stops the stage with the reason, or is excluded
and the others go on. On the deploy run's tiny model (support.build_deploy_run), whose variants are
made to disagree here, so these run while the small run trains."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from support import copy_run, set_params, stage


def test_a_failing_gate_stops_the_stage_with_the_reason(tmp_path, deploy_run):
    """Keras' logits rolled by one class: every variant (converted from the original) disagrees with it on
    (nearly) every photo, whatever the weights - the gate fails for a known reason."""
    import keras

    project = copy_run(deploy_run, tmp_path / "p", "tflite", "onnx", "model.keras")
    (project / "artifacts/tflite").symlink_to(deploy_run / "artifacts/tflite")  # read only, as converted
    model = keras.models.load_model(deploy_run / "artifacts/model/model.keras", compile=False)
    logits = model.get_layer("logits")
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
    # the rolled one (a photo in a few hundred, on the small run's Xception), far under the gate.
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


def test_a_variant_that_misses_a_gate_is_excluded_and_the_others_go_on(tmp_path, deploy_run, monkeypatch):
    """verify.on_gate_failure exclude: the stage passes with the others, verify.json says why, and
    what bench measures and what deploy ships leave the excluded variant out."""
    from pipeline import gates, params, release
    from pipeline.deploy import build
    from pipeline.deploy.errors import VariantExcluded

    project = copy_run(deploy_run, tmp_path / "p", "onnx")
    (project / "artifacts/onnx").mkdir()
    roll_outputs(deploy_run / "artifacts/onnx/onnx_float32.onnx", project / "artifacts/onnx/onnx_float32.onnx")
    shutil.copy(deploy_run / "artifacts/onnx/onnx_float32.json", project / "artifacts/onnx/onnx_float32.json")
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
