"""The targets stage under qemu for real (make test-targets; minutes, root for the arm64 Python once): a
variant whose answers change on a target CPU is excluded for that architecture, and deploy refuses it there.

The variant is a tiny ONNX QDQ model built to change: its uint8 activations are all 255 and the first
class's int8 weights are 127 in pairs, so ONNX Runtime's u8s8 kernel on x86 without VNNI (AVX2's
vpmaddubsw adds each pair of products into 16 bits, saturating at 32767) scores it 6.6 where exact
arithmetic (VNNI's vpdpbusd, arm64's widening dot products) scores 13.0, and the second class (12.6, no
pair over 32767) wins. Which target differs depends on the machine the test runs on: on an AVX2-only
build machine arm64 does, on a VNNI one x86_64 (Haswell) does; the test works out which from the CPU's
flags and the two arithmetics written out below, never from the stage.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import params, release
from support import ROOT, make_project, small_params, softmax, stage, tiny_project

pytestmark = pytest.mark.targets

SIZE = 8
ACTIVATION_SCALE, WEIGHT_SCALE, OUTPUT_SCALE = 0.02, 0.01, 0.1
WEIGHTS = np.full((4, 10), -60, np.int8)  # the other classes: negative, clipped to 0 by the uint8 output
WEIGHTS[:, 0] = [127, 127, 0, 0]  # 255*127 + 255*127 = 64770 in one pair: over int16
WEIGHTS[:, 1] = [127, 0, 120, 0]  # 32385 and 30600: each pair fits


def saturating_model() -> bytes:
    """x (1, 8, 8, 3) -> its mean colour's red + 10 in 4 copies -> QDQ uint8 (all 255) -> MatMul with QDQ int8
    WEIGHTS -> QDQ uint8 logits. ONNX Runtime fuses the QDQ MatMul into its integer kernel."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    constants = {
        "starts": np.array([0]), "ends": np.array([1]), "axes": np.array([1]), "ten": np.full(4, 10.0, np.float32),
        "xs": np.float32(ACTIVATION_SCALE), "xz": np.uint8(0), "w": WEIGHTS, "ws": np.float32(WEIGHT_SCALE),
        "wz": np.int8(0), "ys": np.float32(OUTPUT_SCALE), "yz": np.uint8(0),
    }  # fmt: skip
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Slice", ["mean", "starts", "ends", "axes"], ["red"]),
        helper.make_node("Add", ["red", "ten"], ["a"]),
        helper.make_node("QuantizeLinear", ["a", "xs", "xz"], ["a_q"]),
        helper.make_node("DequantizeLinear", ["a_q", "xs", "xz"], ["a_dq"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["w_dq"]),
        helper.make_node("MatMul", ["a_dq", "w_dq"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "ys", "yz"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "saturates_on_avx2", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [nh.from_array(np.asarray(v), k) for k, v in constants.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def logits(saturating: bool) -> np.ndarray:
    """What the integer kernel answers, worked out here: 255 in every activation (10 / 0.02 clipped), products
    summed in pairs, each pair clipped to int16 where the kernel saturates; then the uint8 output quantization."""
    a = np.full(4, 255, np.int64)
    pairs = (a * WEIGHTS.T.astype(np.int64)).reshape(10, 2, 2).sum(axis=2)
    if saturating:
        pairs = np.clip(pairs, -32768, 32767)
    y = pairs.sum(axis=1) * ACTIVATION_SCALE * WEIGHT_SCALE
    return np.clip(np.round(y / OUTPUT_SCALE), 0, 255) * OUTPUT_SCALE


def saturates_here() -> bool:
    """ONNX Runtime's u8s8 on this machine: exact with VNNI (AVX512-VNNI or AVX-VNNI), saturating on AVX2 without."""
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    return not {"avx512_vnni", "avx_vnni"} & set(flags)


# Which targets' arithmetic saturates: Haswell is AVX2 without VNNI; arm64's int8 dot products widen to 32 bits.
SATURATES = {"x86_64": True, "arm64": False}


def test_the_reference_arithmetic_tells_the_two_kernels_apart():
    assert list(logits(saturating=False)[:3]) == pytest.approx([13.0, 12.6, 0.0])
    assert list(logits(saturating=True)[:3]) == pytest.approx([6.6, 12.6, 0.0])


def test_a_variant_whose_answers_change_on_a_target_cpu_is_excluded_for_that_architecture(
    tmp_path, dataset_dir, monkeypatch
):
    from pipeline.deploy import build
    from pipeline.deploy.errors import VariantExcluded

    overrides = {
        "convert.variants": ["onnx_int8"],
        "targets.architectures": ["x86_64", "arm64"],
        "targets.int8_photos": 4,
        "targets.cache_dir": str(ROOT / ".cache/targets"),  # the arm64 Python and wheels, made once per machine
    }
    project = make_project(tmp_path / "p", small_params(dataset_dir, **overrides))
    tiny_project(project, dataset_dir, saturating_model())  # Keras' answer: class 0
    stage("targets", project)

    here = saturates_here()
    differs = {a for a, saturates in SATURATES.items() if saturates != here}
    assert len(differs) == 1  # one target's arithmetic is the build machine's, the other's is not
    table = pd.read_csv(project / "artifacts/targets/targets.csv").set_index("architecture")
    on_build = softmax(logits(here))
    for architecture, saturates in SATURATES.items():
        row = table.loc[architecture]
        same = architecture not in differs
        assert (row["photos"], row["agreement_build"]) == (4, 1.0 if same else 0.0), architecture
        expected_diff = 0.0 if same else np.abs(softmax(logits(saturates)) - on_build).max()
        assert row["max_prob_diff"] == pytest.approx(expected_diff, rel=1e-2, abs=1e-6), architecture
        # Keras (and exact arithmetic) say class 0; saturating kernels say class 1, on any build machine.
        assert row["agreement_keras"] == (0.0 if saturates else 1.0), architecture
        assert row["verdict"] == ("holds" if same else "excluded"), architecture

    outcome = json.loads((project / "artifacts/targets/targets.json").read_text())
    assert {a for a, o in outcome.items() if o["checked"] and "onnx_int8" in o["excluded"]} == differs
    (architecture,) = differs
    monkeypatch.chdir(project)
    entry = {
        "model": "artifacts/onnx/onnx_int8.onnx",
        "excluded": None,
        "excluded_on": {architecture: outcome[architecture]["excluded"]["onnx_int8"]},
    }
    release.write({"variant": "onnx_int8", "variants": {"onnx_int8": entry}})  # what recommend writes, in part
    deploy = dataclasses.replace(params.load().deploy, variant="onnx_int8")
    with pytest.raises(VariantExcluded, match=f"onnx_int8 was excluded on {architecture} by the targets stage: top-1"):
        build.chosen_model(dataclasses.replace(deploy, architecture=architecture))


def children(pid: int) -> set:
    """The processes whose parent is pid (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def test_a_stopped_stage_leaves_no_emulator_running(tmp_path, dataset_dir):
    """SIGTERM (a CI timeout, kill) ends the stage and the probes it started, not the stage alone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    # arm64 only: it is emulated on any build machine (x86_64 may run natively and end within a second).
    overrides = {"convert.variants": ["onnx_int8"], "targets.architectures": ["arm64"],
                 "targets.cache_dir": str(ROOT / ".cache/targets")}  # fmt: skip
    project = make_project(tmp_path / "p", small_params(dataset_dir, **overrides))
    tiny_project(project, dataset_dir, saturating_model())
    env = {**os.environ, "PYTHONPATH": f"{project}:{project / 'lambda'}"}
    stage_process = subprocess.Popen([sys.executable, "-m", "pipeline.targets"], cwd=project, env=env)
    deadline = time.monotonic() + 120
    while not (probes := children(stage_process.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(probes) == 1, "the stage did not start its probe"
    stage_process.send_signal(signal.SIGTERM)
    assert stage_process.wait(timeout=60) == 143
    time.sleep(1)  # SIGKILL is delivered at once, but the kernel takes a moment to end an emulator
    alive = {pid for pid in probes if running(pid)}
    assert not alive, f"probes left running: {alive}"
