"""The targets stage's rule on hand-made answers (expected values worked out by hand), what recommend and
deploy do with its outcome, and the stage on a machine without the emulators (unchecked, not failed).
The stage under qemu itself is tests/stages/test_targets_emulated.py (make test-targets)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import emulators, params, recommend, release, targets
from pipeline.cli import UserError
from support import LABELS, ROOT, make_project, small_params, tiny_project

T = params.Targets(
    architectures=["x86_64", "arm64"], int8_photos=4, float_photos=2, min_agreement=0.75, max_prob_diff=0.1,
    timeout_s=60, cache_dir=".cache/targets",
)  # fmt: skip


def logits_for(probabilities) -> np.ndarray:
    """Logits whose softmax is the given rows (log of the probabilities)."""
    return np.log(np.asarray(probabilities, dtype=np.float64))


def test_spread_takes_every_class_share_and_never_more_photos_than_there_are():
    assert targets.spread(10, 4) == [0, 3, 6, 9]
    assert targets.spread(10, 1) == [0]
    assert targets.spread(3, 10) == [0, 1, 2]
    assert targets.spread(372, 150)[:3] == [0, 2, 5] and len(targets.spread(372, 150)) == 150


def test_compare_counts_agreement_with_the_build_machine_and_keras_on_the_same_photos():
    # 4 photos, 2 classes; the target flips photo 3 (0.55/0.45 -> 0.45/0.55) and moves photo 0 by 0.02.
    build = logits_for([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.55, 0.45]])
    target = logits_for([[0.88, 0.12], [0.2, 0.8], [0.7, 0.3], [0.45, 0.55]])
    keras = np.array([[0.95, 0.05], [0.1, 0.9], [0.4, 0.6], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 1])
    row = targets.compare(build, target, keras, labels)
    assert row == {
        "photos": 4,
        "agreement_build": 0.75,  # photo 3
        "max_prob_diff": 0.1,  # photo 3: 0.55 -> 0.45
        "agreement_keras": 0.5,  # photos 0 and 1 (Keras says 1 for photo 2, 0 for photo 3)
        "build_agreement_keras": 0.75,  # photos 0, 1, 3
        "accuracy": 0.75,  # photos 0, 1, 3
        "build_accuracy": 0.5,  # photos 0, 1
    }


def test_a_target_fails_below_the_agreement_or_over_the_probability_difference_and_at_them_passes():
    at = {"agreement_build": 0.75, "max_prob_diff": 0.1}
    assert targets.failures(at, T) == []
    assert targets.failures({"agreement_build": 0.7499, "max_prob_diff": 0.1}, T) == [
        "top-1 agreement with the build machine 0.7499 < targets.min_agreement 0.75"
    ]
    assert targets.failures({"agreement_build": 1.0, "max_prob_diff": 0.29}, T) == [
        "probabilities 0.29 from the build machine's > targets.max_prob_diff 0.1"
    ]


TABLE = pd.DataFrame(
    [
        {"variant": "full_int8", "architecture": "x86_64", "cpu": "Haswell", "agreement_build": 1.0,
         "max_prob_diff": 0.0, "verdict": "holds", "reason": ""},
        {"variant": "onnx_int8", "architecture": "x86_64", "cpu": "Haswell", "agreement_build": 0.917,
         "max_prob_diff": 0.29, "verdict": "excluded", "reason": "top-1 agreement ... 0.917 < ..."},
        {"variant": "full_int8", "architecture": "arm64", "cpu": "neoverse-n1", "verdict": "unchecked",
         "reason": "qemu-aarch64-static not found: run `make emulators` as root"},
        {"variant": "onnx_int8", "architecture": "arm64", "cpu": "neoverse-n1", "verdict": "unchecked",
         "reason": "qemu-aarch64-static not found: run `make emulators` as root"},
    ]
)  # fmt: skip


def test_the_outcome_lists_exclusions_per_architecture_and_unchecked_is_not_excluded():
    assert targets.outcome(TABLE) == {
        "x86_64": {"cpu": "Haswell", "checked": True, "excluded": {"onnx_int8": "top-1 agreement ... 0.917 < ..."}},
        "arm64": {
            "cpu": "neoverse-n1",
            "checked": False,
            "unchecked": "qemu-aarch64-static not found: run `make emulators` as root",
            "excluded": {},
        },
    }
    assert targets.headline(TABLE) == {
        "x86_64": {"checked": True, "min_agreement_build": 0.917, "max_prob_diff": 0.29, "excluded": 1},
        "arm64": {"checked": False, "excluded": 0},
    }


SAME = {"keras_only": 0, "variant_only": 0, "accuracy_diff": 0.0, "accuracy_diff_low": 0.0, "accuracy_diff_high": 0.0}
VERIFY = {
    "keras": {"accuracy": 0.8},
    **{v: {"accuracy": 0.8, "agreement": 1.0, **SAME} for v in ("float32", "onnx_int8")},
}
RESULTS = pd.DataFrame({"runtime": ["float32", "onnx_int8"], "p50_ms": [12.0, 3.0]}).set_index("runtime")
RULE = params.Recommend(
    max_accuracy_drop=0.005,
    min_agreement=0.97,
    prefer="warm_p50",
    bootstrap_resamples=10,
    bootstrap_seed=0,
    stable_share=0.95,
)


def test_recommend_rejects_a_variant_excluded_on_the_deploys_architecture_only():
    outcome = targets.outcome(TABLE)
    on_x86 = recommend.recommend(
        RESULTS, VERIFY, ["float32", "onnx_int8"], RULE, recommend.on_target(outcome, "x86_64")
    )
    assert on_x86["variant"] == "float32"  # onnx_int8 is faster but answers otherwise on Haswell
    assert "rejected: onnx_int8" in on_x86["reason"]
    assert on_x86["reason"].endswith("; answers the same on x86_64 (Haswell, targets stage)")
    # On arm64 nothing was checked: the fastest is chosen, and the reason says the choice is unchecked there.
    on_arm = recommend.recommend(RESULTS, VERIFY, ["float32", "onnx_int8"], RULE, recommend.on_target(outcome, "arm64"))
    assert on_arm["variant"] == "onnx_int8"
    assert on_arm["reason"].endswith(
        "; unchecked on arm64: qemu-aarch64-static not found: run `make emulators` as root"
    )
    left_out = recommend.on_target({"x86_64": outcome["x86_64"]}, "arm64")
    assert recommend.recommend(RESULTS, VERIFY, ["onnx_int8"], RULE, left_out)["reason"].endswith(
        "; unchecked on arm64: targets.architectures leaves it out"
    )
    with pytest.raises(UserError, match="onnx_int8: excluded on x86_64 \\(Haswell\\) by the targets stage: top-1"):
        recommend.recommend(RESULTS, VERIFY, ["onnx_int8"], RULE, recommend.on_target(outcome, "x86_64"))


def test_deploy_refuses_a_variant_excluded_on_its_architecture(tmp_path, monkeypatch):
    from pipeline.deploy import build
    from pipeline.deploy.errors import VariantExcluded

    monkeypatch.chdir(tmp_path)
    (tmp_path / "artifacts/onnx").mkdir(parents=True)
    (tmp_path / "artifacts/onnx/onnx_int8.onnx").write_bytes(b"a model")
    (tmp_path / "artifacts/onnx/onnx_int8.json").write_text(
        json.dumps({"sha256": "s", "labels": LABELS, "input_size": 75})
    )
    no_photos = pd.DataFrame(columns=["path", "label", "model", "predicted"])
    release.write(release.describe("onnx_int8", ["onnx_int8"], {}, targets.outcome(TABLE), no_photos))
    deploy = params.load(ROOT / "params.yaml").deploy
    x86, arm = (
        params.dataclasses.replace(deploy, variant="onnx_int8", architecture=arch) for arch in ("x86_64", "arm64")
    )
    with pytest.raises(VariantExcluded) as refused:
        build.chosen_model(x86)
    assert (
        str(refused.value) == "onnx_int8 was excluded on x86_64 by the targets stage: top-1 agreement ... 0.917 < ..."
    )
    assert build.chosen_model(arm) == ("onnx_int8", Path("artifacts/onnx/onnx_int8.onnx"))  # unchecked there


def test_without_the_emulators_every_variant_is_unchecked_with_one_line_saying_what_to_do(tmp_path, dataset_dir):
    """PATH without qemu (and not root for the arm64 Python): the stage still writes its outputs."""
    project = make_project(
        tmp_path / "p",
        small_params(dataset_dir, **{"convert.variants": ["onnx_int8"], "targets.architectures": ["x86_64", "arm64"]}),
    )
    tiny_project(project, dataset_dir, tiny_float_model(8))
    # The venv's bin alone on PATH: no qemu-*-static, no debootstrap.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "PYTHONPATH": f"{project}:{project / 'lambda'}"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.targets"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if line.startswith("targets:") and "unchecked" in line]
    # An AVX2-only x86 build machine runs the x86_64 target natively (no qemu needed): checked even so.
    native = emulators.same_as_target("x86_64")
    hint = "run `make emulators` as root (apt-get install qemu-user-static, then binfmt_misc for arm64)"
    assert said == [
        *([] if native else [f"targets: x86_64 unchecked: qemu-x86_64-static not found: {hint}"]),
        f"targets: arm64 unchecked: qemu-aarch64-static not found: {hint}",
    ]
    table = pd.read_csv(project / "artifacts/targets/targets.csv")
    assert list(table["verdict"]) == ["holds" if native else "unchecked", "unchecked"]
    outcome = json.loads((project / "artifacts/targets/targets.json").read_text())
    assert {a: (o["checked"], o["excluded"]) for a, o in outcome.items()} == {
        "x86_64": (native, {}),
        "arm64": (False, {}),
    }


def tiny_float_model(size: int) -> bytes:
    """A float ONNX model of the photos' shape whose logits are the mean colour and zeros (runs anywhere)."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Pad", ["m", "pads"], ["logits"]),
    ]
    pads = helper.make_tensor("pads", TensorProto.INT64, [4], [0, 0, 0, len(LABELS) - 3])
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])], [pads],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


@pytest.mark.parametrize("reduce_range, widest", [(False, 127), (True, 64)])
def test_reduce_range_keeps_onnx_int8_weights_where_a_pair_of_products_fits_16_bits(tmp_path, reduce_range, widest):
    """255 x 127 x 2 = 64770 overflows the int16 that AVX2's vpmaddubsw adds each pair into; 255 x 64 x 2 =
    32640 fits. convert.onnx_reduce_range quantizes the weights to 7 bits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pipeline import onnx_convert

    weights = np.linspace(-1, 1, 40, dtype=np.float32).reshape(4, 10)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [numpy_helper.from_array(weights, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "float32.onnx")
    photos = np.random.default_rng(0).uniform(0, 1, (8, 4)).astype(np.float32)
    onnx_convert.quantize_int8(
        tmp_path / "float32.onnx", tmp_path / "int8.onnx", photos, tmp_path / "log", reduce_range
    )
    quantized = onnx.load(tmp_path / "int8.onnx").graph.initializer
    int8 = [numpy_helper.to_array(t) for t in quantized if t.data_type == TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8) == 1 and int(np.abs(int8[0].astype(int)).max()) == widest


def test_the_report_gives_each_variant_and_target_its_verdict_and_says_why_once():
    from pipeline import report

    table = TABLE.assign(runtime="onnxruntime==1.32.0", photos=[150, 150, None, None], agreement_keras=1.0,
                         build_agreement_keras=1.0, accuracy=0.8)  # fmt: skip
    on_x86 = table.iloc[1].copy()
    assert report.verdict(on_x86, reduce_range=True) == "excluded"  # an excluded variant stays excluded
    holding = table.iloc[0].copy()
    assert report.verdict(holding, reduce_range=True) == "holds"  # full_int8: nothing to fix
    holding["variant"] = "onnx_int8"
    assert report.verdict(holding, reduce_range=True) == "fixed (convert.onnx_reduce_range)"
    assert report.verdict(holding, reduce_range=False) == "holds"
    text = re.sub(" +", " ", "\n".join(report.targets_section(table, reduce_range=True)))
    assert "| full_int8 | x86_64 (Haswell) | onnxruntime==1.32.0 | 150 | 1 | 0 | 1 | 1 | 0.8 | holds |" in text
    assert "| full_int8 | arm64 (neoverse-n1) | onnxruntime==1.32.0 | | | | 1 | 1 | 0.8 | unchecked |" in text
    assert text.count("| unchecked |") == 2  # both variants on arm64
    assert text.count("qemu-aarch64-static not found") == 1  # the reason once per target
    assert "- onnx_int8 on x86_64: excluded: top-1 agreement ... 0.917 < ..." in text
    empty = report.targets_section(pd.DataFrame(columns=targets.COLUMNS), reduce_range=True)
    assert "No target CPU checked (targets.architectures is empty)." in empty


@pytest.mark.parametrize(
    "architecture, flags, native",
    [
        ("x86_64", {"sse4_2", "avx", "avx2", "fma"}, True),  # AVX2-only (Zen 3, Haswell..Skylake client)
        ("x86_64", {"avx2", "fma", "avx512f", "avx512_vnni"}, False),  # Ice Lake, Zen 4: VNNI's int8 paths
        ("x86_64", {"avx2", "fma", "avx_vnni"}, False),  # Alder Lake: VEX-encoded VNNI
        ("x86_64", {"avx2", "amx_tile", "amx_int8"}, False),
        ("x86_64", set(), False),  # flags unknown: emulate
        ("arm64", {"avx2"}, False),  # arm64 always runs its own Python under qemu
    ],
)
def test_the_x86_target_runs_natively_only_on_a_cpu_with_haswells_kernels(architecture, flags, native):
    from pipeline import emulators

    assert emulators.same_as_target(architecture, flags) is native


@pytest.mark.parametrize("value", [["x86_64", "sparc"], ["arm64", "arm64"]])
def test_targets_architectures_are_lambdas_names_each_once(tmp_path, value):
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["targets"]["architectures"] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    expected = f"params.yaml: 'targets.architectures' must be distinct names from ('x86_64', 'arm64'), got {value!r}"
    with pytest.raises(UserError) as refused:
        params.load(tmp_path / "params.yaml")
    assert str(refused.value) == expected
