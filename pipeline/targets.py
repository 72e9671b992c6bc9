"""Stage targets: every variant verify kept, run in the function's own runtime on Lambda's CPUs under qemu,
its answers compared with the build machine's (same runtime, same photos) and with Keras.

It proves arithmetic, not speed (docs/targets.md): int8 kernels take other code paths on other CPUs (ONNX
Runtime's u8s8 saturates on AVX2 without VNNI; arm64 has its own), so int8 variants get most of the photos.
Both targets run at once, one core each. A target the emulators cannot run here is unchecked, not failed.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from packaging.requirements import Requirement

from pipeline import cli, dataset, emulators, files, gates, params, paths, variants
from serving.images import scale, softmax
from serving.runtime import load_model

PACKAGES = {"litert": "ai-edge-litert", "onnxruntime": "onnxruntime"}  # each runtime's package in its requirements
COLUMNS = ["variant", "architecture", "cpu", "runtime", "photos", "agreement_build", "max_prob_diff",
           "agreement_keras", "build_agreement_keras", "accuracy", "build_accuracy", "seconds", "cpu_seconds",
           "verdict", "reason"]  # fmt: skip


def spread(total: int, count: int) -> list:
    """count indices spread evenly over range(total) (the test split is in class order: each class gets its share)."""
    return sorted({round(i) for i in np.linspace(0, total - 1, min(count, total))})


def compare(build: np.ndarray, target: np.ndarray, keras: np.ndarray, labels: np.ndarray) -> dict:
    """A variant's logits on a target against the build machine's (same photos) and Keras' probabilities."""
    on_build, on_target = softmax(build), softmax(target)
    return {
        "photos": len(labels),
        "agreement_build": round(float(np.mean(on_target.argmax(1) == on_build.argmax(1))), 4),
        "max_prob_diff": float(f"{np.abs(on_target - on_build).max():.3g}"),
        "agreement_keras": round(float(np.mean(on_target.argmax(1) == keras.argmax(1))), 4),
        "build_agreement_keras": round(float(np.mean(on_build.argmax(1) == keras.argmax(1))), 4),
        "accuracy": round(float(np.mean(on_target.argmax(1) == labels)), 4),
        "build_accuracy": round(float(np.mean(on_build.argmax(1) == labels)), 4),
    }


def failures(row: dict, t: params.Targets) -> list:
    """Why a variant's answers on a target are not the ones verify checked here; empty when they are."""
    agreement, diff = row["agreement_build"], row["max_prob_diff"]
    reasons = []
    if agreement < t.min_agreement:
        reasons.append(f"top-1 agreement with the build machine {agreement} < targets.min_agreement {t.min_agreement}")
    if diff > t.max_prob_diff:
        reasons.append(f"probabilities {diff} from the build machine's > targets.max_prob_diff {t.max_prob_diff}")
    return reasons


def runtime_pin(variant: str, architecture: str) -> str:
    """The runtime the function installs for the variant on the architecture (ai-edge-litert==1.4.0 on arm64)."""
    pins = variants.pins(variants.requirements(variant), architecture)
    return next(pin for pin in pins if Requirement(pin).name == PACKAGES[variants.runtime(variant)])


def start(architecture: str, kept: list, job: Path, t: params.Targets) -> subprocess.Popen:
    """pipeline.target_probe on the architecture's Lambda CPU in the function's runtime: this venv's on x86_64;
    on arm64 the arm64 pins' wheels in a Debian arm64 Python. UserError where the emulators cannot run here."""
    here, probe = Path.cwd(), ["-m", "pipeline.target_probe", str(job)]
    site = []
    if emulators.same_as_target(architecture):  # an AVX2-only x86 here: its own kernels are Haswell's
        argv, env = [sys.executable, *probe], {}
    elif architecture == "x86_64":
        argv, env = emulators.emulated("x86_64", [sys.executable, *probe])
    else:
        wanted = {PACKAGES[variants.runtime(v)] for v in kept} | {"numpy"}  # photos come decoded: no Pillow
        pins = {pin for v in kept for pin in variants.pins(variants.requirements(v), "arm64")}
        pins = sorted(pin for pin in pins if Requirement(pin).name in wanted)
        root = emulators.arm64_root(Path(t.cache_dir))  # first: it says when qemu or root is missing
        site = [str(emulators.arm64_packages(Path(t.cache_dir), pins))]
        argv, env = emulators.emulated("arm64", [str(root / "usr/bin/python3"), *probe], root)
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([*site, str(here), str(here / "lambda")])}
    with open(job.parent / "log.txt", "w") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def answers(out: Path, variant: str, cpu: str) -> tuple:
    """(logits, their wall and CPU seconds) the probe wrote for the variant, or (None, why it has none)."""
    if (out / f"{variant}.npy").exists():
        return np.load(out / f"{variant}.npy"), json.loads((out / f"{variant}.json").read_text())
    said = (out / f"{variant}.error") if (out / f"{variant}.error").exists() else (out / "log.txt")
    # qemu warns once per CPU feature TCG lacks (pcid, x2apic...): harmless, and never the reason
    lines = [line for line in said.read_text().splitlines() if line.strip() and "TCG doesn't support" not in line]
    last = lines[-1:] or ["no output"]
    return None, f"cannot run on {cpu}: {last[0]}"


def check(p: params.Params) -> pd.DataFrame:
    """One row per kept variant and target: its numbers there and verdict (holds, excluded, unchecked) with why."""
    t, verify = p.targets, json.loads(Path(paths.VERIFY_METRICS).read_text())
    kept = gates.not_excluded(p.convert.variants, verify)
    if not t.architectures:
        print("targets: targets.architectures is empty: no target CPU checked")
        return pd.DataFrame(columns=COLUMNS)
    native = {v: load_model(variants.model_path(v), num_threads=1) for v in kept}
    names = dataset.model_labels()
    images, labels, image_paths = dataset.load_split(dataset.read_manifest(), "test", native[kept[0]].input_size, names)
    count = {v: t.int8_photos if variants.VARIANTS[v].integer else t.float_photos for v in kept}
    chosen = spread(len(labels), max(count.values()))  # the photos every variant's share is spread over
    photos = {v: spread(len(chosen), count[v]) for v in kept}  # positions in chosen
    x, labels = scale(images[chosen]), labels[chosen]
    predictions = dataset.read_labelled(paths.PREDICTIONS)
    keras = predictions[predictions["model"] == "keras"].set_index("path")[[f"p_{n}" for n in names]]
    keras = keras.loc[[image_paths[i] for i in chosen]].to_numpy()
    # Stopped (kill, a CI timeout): exit through the finally below, so that no emulator runs on without it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="targets-") as work:
        runs, unchecked = start_all(t, kept, photos, x, Path(work))
        try:
            build = {v: np.concatenate([native[v].logits(x[i : i + 1]) for i in photos[v]]) for v in kept}
            rows = []
            for architecture in t.architectures:
                out = Path(work) / architecture
                if architecture in runs:
                    wait(runs[architecture], architecture, t.timeout_s)
                for v in kept:
                    why = unchecked.get(architecture)
                    rows.append(judge(v, architecture, out, why, build[v], keras[photos[v]], labels[photos[v]], t))
        finally:  # a failure here leaves no emulator running
            for process, _ in runs.values():
                process.kill()
    return pd.DataFrame(rows, columns=COLUMNS)


def judge(variant, architecture, out: Path, unchecked, build, keras, labels, t: params.Targets) -> dict:
    """One row of the table: the variant's numbers on the target (the probe's answers in out) and its verdict."""
    cpu = emulators.CPU_MODELS[architecture] + (" (native)" if emulators.same_as_target(architecture) else "")
    row = {"variant": variant, "architecture": architecture, "cpu": cpu, "runtime": runtime_pin(variant, architecture)}
    if unchecked:
        return {**row, "verdict": "unchecked", "reason": unchecked}
    logits, seconds = answers(out, variant, cpu)
    if logits is None:  # it could not run there: excluded, with the error's last line
        return {**row, "verdict": "excluded", "reason": seconds}
    measured = compare(build, logits, keras, labels)
    reasons = failures(measured, t)
    return {**row, **measured, **seconds, "verdict": "excluded" if reasons else "holds", "reason": "; ".join(reasons)}


def start_all(t: params.Targets, kept: list, photos: dict, x: np.ndarray, work: Path) -> tuple:
    """Each target's probe started at once (one core each): {architecture: (process, started)}, and the
    targets the emulators cannot run here, with why (said once each)."""
    np.save(work / "photos.npy", x)
    runs, unchecked = {}, {}
    for architecture in t.architectures:
        job = work / architecture / "job.json"
        job.parent.mkdir()
        models = {v: {"model": str(variants.model_path(v).resolve()), "photos": photos[v]} for v in kept}
        job.write_text(json.dumps({"photos": str(work / "photos.npy"), "out": str(job.parent), "variants": models}))
        try:
            runs[architecture] = start(architecture, kept, job, t), time.monotonic()
        except cli.UserError as e:  # no qemu, or no root to make the arm64 Python: the target is unchecked
            unchecked[architecture] = str(e)
            print(f"targets: {architecture} unchecked: {e}")
    return runs, unchecked


def wait(run: tuple, architecture: str, timeout_s: int) -> None:
    process, started = run
    try:
        process.wait(timeout=max(1.0, timeout_s - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        raise cli.UserError(
            f"targets: {architecture} ({emulators.CPU_MODELS[architecture]}) gave no answer in {timeout_s} s "
            "(targets.timeout_s)"
        ) from None
    print(f"targets: {architecture} ({emulators.CPU_MODELS[architecture]}) ran in {time.monotonic() - started:.0f} s")


def outcome(table: pd.DataFrame) -> dict:
    """targets.json: per architecture, whether it was checked (or why not) and the variants excluded there, with why."""
    result = {}
    for architecture, rows in table.groupby("architecture", sort=False):
        unchecked = rows[rows["verdict"] == "unchecked"]
        excluded = rows[rows["verdict"] == "excluded"]
        why = {"unchecked": unchecked["reason"].iloc[0]} if len(unchecked) else {}
        left_out = dict(zip(excluded["variant"], excluded["reason"], strict=True))
        result[architecture] = {"cpu": rows["cpu"].iloc[0], "checked": unchecked.empty, **why, "excluded": left_out}
    return result


def headline(table: pd.DataFrame) -> dict:
    """The metrics file: per target, the worst agreement with the build machine, the largest probability
    difference and how many variants it excludes (dvc metrics diff shows a fix as these numbers moving)."""
    metrics = {}
    for architecture, rows in table.groupby("architecture", sort=False):
        ran = rows.dropna(subset=["agreement_build"])
        worst = (
            {
                "min_agreement_build": float(ran["agreement_build"].min()),
                "max_prob_diff": float(ran["max_prob_diff"].max()),
            }
            if len(ran)
            else {}
        )
        checked = bool((rows["verdict"] != "unchecked").all())
        metrics[architecture] = {"checked": checked, **worst, "excluded": int((rows["verdict"] == "excluded").sum())}
    return metrics


def main() -> None:
    p = params.load()
    for path in (paths.VERIFY_METRICS, paths.PREDICTIONS):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the verify stage first (dvc repro verify)")
    table = check(p)
    with files.atomic_path(paths.TARGETS_TABLE) as tmp:
        table.to_csv(tmp, index=False)
    files.write_json(paths.TARGETS, outcome(table))
    files.write_json(paths.TARGETS_METRICS, headline(table))
    columns = [
        c
        for c in (
            "variant",
            "architecture",
            "photos",
            "agreement_build",
            "max_prob_diff",
            "agreement_keras",
            "seconds",
            "verdict",
        )
        if c in table
    ]
    print(table[columns].to_string(index=False))
    for _, row in table[table["verdict"] == "excluded"].iterrows():
        print(f"excluded on {row['architecture']}: {row['variant']}: {row['reason']}")


if __name__ == "__main__":
    cli.run(main)
