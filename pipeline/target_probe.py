"""What the targets stage runs on each emulated CPU: the function's own runtime on prepared photos, logits out.

    python -m pipeline.target_probe JOB.json

JOB names the scaled photos (.npy, float32 N x size x size x 3, made on the build machine so that
decoding is not what is compared) and, per variant, its model file and which of the photos to run. Each
variant's logits go to OUT/<variant>.npy as soon as they are done (OUT/<variant>.json: their seconds), or
OUT/<variant>.error says why it could not run (a runtime that cannot load the model on this CPU). Imports numpy and
serving.runtime only: the arm64 Python that runs it has nothing else.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from serving.runtime import load_model


def write_atomically(dest: Path, write) -> None:
    """write(file) then rename onto dest: the stage never reads half a file (pipeline.files is not here)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, dest)


def run(job: dict) -> None:
    photos = np.load(job["photos"])
    out = Path(job["out"])
    for variant, task in job["variants"].items():
        started, cpu = time.perf_counter(), time.process_time()
        try:
            model = load_model(task["model"], num_threads=1)  # one core per target: both targets run at once
            # Batch 1, one photo at a time: the shape the function serves (and the kernels it takes).
            logits = np.concatenate([model.logits(photos[i : i + 1]) for i in task["photos"]])
        except Exception:  # the stage reports it as this variant failing on this CPU, with the error's last line
            write_atomically(out / f"{variant}.error", lambda f: f.write(traceback.format_exc().encode()))
            continue
        # CPU seconds beside the wall clock's: on a busy machine the emulator waits for a core, and the CPU time
        # is what sizes targets.*_photos (the emulator's speed says nothing about Lambda's).
        seconds = {
            "seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1),
        }
        write_atomically(out / f"{variant}.json", lambda f, s=seconds: f.write(json.dumps(s).encode()))
        write_atomically(out / f"{variant}.npy", lambda f, logits=logits: np.save(f, logits))  # last: marks it done
        print(f"{variant}: {len(task['photos'])} photos in {seconds['seconds']:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
