"""What the bench stage runs in a fresh process: import, load, first prediction, warm latency, memory.

    python -m pipeline.bench_probe RUNTIME MODEL THREADS IMAGE WARM_RUNS BATCH

RUNTIME is litert, keras, onnxruntime or handler. Prints one JSON line. Imports only what RUNTIME needs, so
the import time and peak memory are the runtime's own.
"""

import json
import os
import resource
import sys
import time


def percentiles(times_ms: list) -> dict:
    import numpy as np

    if not times_ms:
        return {}
    return {f"p{q}_ms": round(float(np.percentile(times_ms, q)), 3) for q in (50, 90, 99)}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries it over from the parent
    across fork + exec, so a child of a TensorFlow process would report TensorFlow's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(predict, x, warm_runs: int) -> tuple[float, list]:
    """The first prediction's seconds, then warm_runs more in milliseconds each."""
    t = time.perf_counter()
    predict(x)
    first = time.perf_counter() - t
    times = []
    for _ in range(warm_runs):
        t = time.perf_counter()
        predict(x)
        times.append((time.perf_counter() - t) * 1000)
    return first, times


def per_second(predict, batch, repeats: int = 3) -> float:
    predict()
    t = time.perf_counter()
    for _ in range(repeats):
        predict()
    return repeats * batch / (time.perf_counter() - t)


def litert(model_path, threads, image_path, warm_runs, batch):
    started = time.perf_counter()
    from ai_edge_litert.interpreter import Interpreter

    imported = time.perf_counter()
    from serving.images import preprocess
    from serving.runtime import TFLiteModel

    model = TFLiteModel(model_path, num_threads=threads)
    loaded = time.perf_counter()
    x = preprocess(image_path, model.input_size)
    first, times = timed(model.logits, x, warm_runs)
    # Throughput at a larger batch: the interpreter is fixed at batch 1 until resized.
    big = Interpreter(model_path=str(model_path), num_threads=threads)
    index = big.get_input_details()[0]["index"]
    big.resize_tensor_input(index, [batch, model.input_size, model.input_size, 3])
    big.allocate_tensors()
    import numpy as np

    big.set_tensor(index, model.input_tensor(np.repeat(x, batch, axis=0)))
    throughput = per_second(big.invoke, batch)
    return imported - started, loaded - imported, first, times, throughput


def keras_runtime(model_path, threads, image_path, warm_runs, batch):
    started = time.perf_counter()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    imported = time.perf_counter()
    from serving.images import preprocess

    model = keras.models.load_model(model_path, compile=False)
    loaded = time.perf_counter()
    x = preprocess(image_path, model.input_shape[1])
    first, times = timed(model.predict_on_batch, x, warm_runs)
    import numpy as np

    xb = np.repeat(x, batch, axis=0)
    throughput = per_second(lambda: model.predict_on_batch(xb), batch)
    return imported - started, loaded - imported, first, times, throughput


def onnxruntime(model_path, threads, image_path, warm_runs, batch):
    started = time.perf_counter()
    import onnxruntime  # noqa: F401  (timed alone; the runner below is the function's own)

    imported = time.perf_counter()
    from serving.images import preprocess
    from serving.runtime import ONNXModel

    model = ONNXModel(model_path, num_threads=threads)
    loaded = time.perf_counter()
    x = preprocess(image_path, model.input_size)
    first, times = timed(model.logits, x, warm_runs)
    import numpy as np

    xb = np.repeat(x, batch, axis=0)  # the exported graph takes any batch size
    throughput = per_second(lambda: model.logits(xb), batch)
    return imported - started, loaded - imported, first, times, throughput


def handler(model_path, threads, image_path, warm_runs, batch):
    """The Lambda handler itself: module import loads the model; the answer includes decoding."""
    import base64

    os.environ.update(MODEL_PATH=str(model_path), NUM_THREADS=str(threads))
    with open(image_path, "rb") as f:
        event = {"image": base64.b64encode(f.read()).decode()}
    started = time.perf_counter()
    from serving import handler as function

    function.model()

    loaded = time.perf_counter()
    first, times = timed(function.lambda_handler, event, warm_runs)
    return 0.0, loaded - started, first, times, 0.0


def main() -> None:
    runtime, model_path, threads, image_path, warm_runs, batch = sys.argv[1:7]
    run = {"litert": litert, "keras": keras_runtime, "onnxruntime": onnxruntime, "handler": handler}[runtime]
    with open(os.devnull, "w") as devnull:
        if runtime == "handler":
            sys.stdout = devnull  # the handler's JSON log lines are not the result
        imported, loaded, first, times, throughput = run(
            model_path, int(threads), image_path, int(warm_runs), int(batch)
        )
    result = {
        "import_s": round(imported, 4),
        "load_s": round(loaded, 4),
        "first_prediction_s": round(first, 4),
        **percentiles(times),
        "throughput_img_s": round(throughput, 1),
        "peak_rss_mb": peak_rss_mb(),
    }
    sys.stdout = sys.__stdout__
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
