"""The train stage in the small run: progressive resizing, the kept epoch, the metrics it writes."""

import json
from pathlib import Path

import pandas as pd
import pytest


def test_small_training_run_with_progressive_resizing(small_run):
    info = json.loads((small_run / "artifacts/model/info.json").read_text())
    assert info["source"] == "train" and info["weights"] == "none" and info["input_size"] == 75
    assert info["train_sizes"] == [71] and info["epochs"] == 5
    # mixed_precision is on in params: bfloat16 only where the CPU computes it (emulated, it is ~10x slower)
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert info["precision"] == ("mixed_bfloat16" if native else "float32")
    assert ("no AVX512-BF16 or AMX on this CPU" in (small_run / "repro.log").read_text()) == (not native)
    history = pd.read_csv(small_run / "artifacts/model/history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    # The early epochs train smaller: their share (5 epochs, 2 sizes: the first 3) at the one train size.
    assert list(history["size"]) == [71, 71, 71, 75, 75]
    assert "epochs 1-3 at 71 px" in (small_run / "repro.log").read_text()
    # The kept weights are the best validation epoch's (training itself is not reproducible to the bit).
    best = history.loc[history["val_accuracy"].idxmax()]
    assert info["best_epoch"] == best["epoch"] and info["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-4)
    metrics = json.loads((small_run / "artifacts/metrics/train.json").read_text())
    assert metrics["weights"] == "none" and metrics["recipe"] == "scratch"
    assert metrics["val_accuracy"] == info["val_accuracy"]
