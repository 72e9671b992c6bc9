"""Seconds per Keras training step in float32 and mixed_bfloat16 on this CPU, side by side in one process
(float32 again last, to bracket drift): the from-scratch recipe's model at 75 px, batch 16, random data.
Run: PYTHONPATH=.:lambda .venv/bin/python benchmarks/mixed_precision.py"""

import argparse
import time

STEPS, BATCH, SIZE = 6, 16, 75


def main() -> None:
    # Heavy imports after the command line is read: --help answers at once.
    import keras
    import numpy as np

    from pipeline.bench import cpu_name
    from pipeline.fit import native_bfloat16
    from pipeline.model import build_model

    print(f"{cpu_name()}: native bfloat16 {native_bfloat16()}")
    rng = np.random.default_rng(0)
    x = rng.random((BATCH * STEPS, SIZE, SIZE, 3), dtype=np.float32)
    y = rng.integers(0, 10, BATCH * STEPS)
    for policy in ("float32", "mixed_bfloat16", "float32"):
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(SIZE, None, "leaky_relu", 0, 0.2, False, 0.9)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)  # traces the step once
        started = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, verbose=0)
        print(f"{policy}: {(time.perf_counter() - started) / STEPS:.2f} s/step", flush=True)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
