"""Stage convert: the Keras model to each variant of convert.variants, by the converter
pipeline/variants.py's table names: TFLite (LiteRT) float32, float16, dynamic-range and full int8; ONNX
float32 and int8 (pipeline/onnx_convert.py)."""

import functools
import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import cli, dataset, files, onnx_convert, params, paths, variants
from pipeline.relu_swap import swap_residual_relus
from serving.images import scale

INT8_IO = {"int8": tf.int8, "uint8": tf.uint8}


def export_for_tflite(model, folder: Path) -> Path:
    """The SavedModel TFLiteConverter.from_keras_model writes for every conversion (inference call,
    training=False, the model's input signature), written once: each variant converts from it."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [tf.TensorSpec(x.shape, x.dtype, name=x.name) for x in model.inputs]
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False), signature)
    archive.write_out(str(folder), verbose=False)
    return folder


@dataclass
class Job:
    """What every converter gets: the Keras model, the calibration photos, convert's params, one log per
    runtime, and the variants this run has converted so far."""

    model: keras.Model
    representative: np.ndarray
    p: params.Convert
    logs: dict  # runtime -> its convert.log
    workdir: Path  # a temporary folder for this run's intermediate files
    converted: set = field(default_factory=set)

    def saved_model(self) -> Path:
        """The SavedModel export_for_tflite writes, exported once per run for every TFLite variant."""
        folder = self.workdir / "saved_model"
        return folder if folder.exists() else export_for_tflite(self.model, folder)


# Each converter writes variants.model_path(variant) and returns what it measured beyond size and time.
CONVERTERS = {}


def converter(function):
    """Register a converter under its name, the converter column of pipeline/variants.py's table."""
    CONVERTERS[function.__name__] = function
    return function


def write_tflite(tflite_converter, variant: str) -> None:
    flatbuffer = tflite_converter.convert()
    with files.atomic_path(variants.model_path(variant)) as tmp:
        tmp.write_bytes(flatbuffer)


def calibrate_full_int8(tflite_converter, job: Job):
    """Integer weights and activations, calibrated on the representative photos; float or int8/uint8
    input and output (convert.int8_io)."""
    tflite_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tflite_converter.representative_dataset = lambda: ([image[None]] for image in job.representative)
    tflite_converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if job.p.int8_io in INT8_IO:
        tflite_converter.inference_input_type = INT8_IO[job.p.int8_io]
        tflite_converter.inference_output_type = INT8_IO[job.p.int8_io]
    return tflite_converter


@converter
def tflite_float32(job: Job, variant: str) -> dict:
    write_tflite(tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model())), variant)
    return {}


@converter
def tflite_float16(job: Job, variant: str) -> dict:
    c = tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model()))
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_types = [tf.float16]
    write_tflite(c, variant)
    return {}


@converter
def tflite_dynamic_int8(job: Job, variant: str) -> dict:
    c = tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model()))
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    write_tflite(c, variant)
    return {}


@converter
def tflite_full_int8(job: Job, variant: str) -> dict:
    write_tflite(calibrate_full_int8(tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model())), job), variant)
    return {}


@converter
def tflite_full_int8_leaky(job: Job, variant: str) -> dict:
    """Full int8 of the model with its residual ReLUs as LeakyReLU(convert.leaky_slope), no retraining."""
    swapped_model, swapped = swap_residual_relus(job.model, job.p.leaky_slope)
    write_tflite(calibrate_full_int8(tf.lite.TFLiteConverter.from_keras_model(swapped_model), job), variant)
    return {"swapped_relus": swapped}


def worst_layers(stats: pd.DataFrame, count: int) -> list[str]:
    """The count tensors whose int8 quantization errs most for their range: the root mean squared error
    against float over the quantization step (scale), from QuantizationDebugger's layer statistics.
    Rounding alone errs 1/sqrt(12) = 0.29 of a step; the layers far above that lose the most."""
    error = np.sqrt(stats["mean_squared_error"]) / stats["scale"]
    ranked = stats.assign(error=error).sort_values("error", ascending=False, kind="stable")
    return list(ranked["tensor_name"][:count])


@converter
def tflite_selective_int8(job: Job, variant: str) -> dict:
    """Full int8 with the convert.selective_float_layers layers whose quantization errs most kept in
    float: TensorFlow's QuantizationDebugger compares each layer with float on the first
    convert.selective_debug_images calibration photos, then quantizes again with those layers denylisted."""
    photos = job.representative[: job.p.selective_debug_images]

    def debugger(**options):
        source = calibrate_full_int8(tf.lite.TFLiteConverter.from_saved_model(str(job.saved_model())), job)
        return tf.lite.experimental.QuantizationDebugger(
            converter=source, debug_dataset=lambda: ([image[None]] for image in photos), **options
        )

    measured = debugger()
    measured.run()
    stats = io.StringIO()
    measured.layer_statistics_dump(stats)
    kept = worst_layers(pd.read_csv(io.StringIO(stats.getvalue())), job.p.selective_float_layers)
    selective = debugger(debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=kept))
    with files.atomic_path(variants.model_path(variant)) as tmp:
        tmp.write_bytes(selective.get_nondebug_quantized_model())
    return {"float_layers": kept}


@converter
def onnx_float32(job: Job, variant: str) -> dict:
    onnx_convert.export_float32(job.model, variants.model_path(variant), job.logs["onnxruntime"])
    return {}


@converter
def onnx_int8(job: Job, variant: str) -> dict:
    """Quantizes onnx_float32 as exported earlier in this run (never a file left by an earlier run), or
    a float32 export of its own."""
    dest, log, reduce_range = variants.model_path(variant), job.logs["onnxruntime"], job.p.onnx_reduce_range
    if "onnx_float32" in job.converted:
        onnx_convert.quantize_int8(variants.model_path("onnx_float32"), dest, job.representative, log, reduce_range)
        return {}
    float_path = job.workdir / "float32.onnx"
    onnx_convert.export_float32(job.model, float_path, log)
    onnx_convert.quantize_int8(float_path, dest, job.representative, log, reduce_range)
    return {}


def convert(model_path: str, p: params.Params) -> dict:
    if not Path(model_path).exists():
        raise cli.UserError(f"{model_path} not found: run the train stage first (dvc repro train)")
    model = keras.models.load_model(model_path, compile=False)
    size, labels = model.input_shape[1], dataset.model_labels()
    representative = np.zeros((0, size, size, 3), np.float32)
    if any(variants.VARIANTS[v].calibrated for v in p.convert.variants):
        images, _, _ = dataset.load_split(dataset.read_manifest(), "train", size, labels)
        pick = np.random.default_rng(0).permutation(len(images))[: p.convert.representative_images]
        representative = scale(images[pick])

    logs = {}
    for runtime, r in variants.RUNTIMES.items():  # each folder is a dvc.yaml out, even when no variant lands in it
        Path(r["dir"]).mkdir(parents=True, exist_ok=True)
        logs[runtime] = Path(r["dir"]) / "convert.log"
        logs[runtime].unlink(missing_ok=True)
    metrics = {"keras": {"size_mb": round(Path(model_path).stat().st_size / 2**20, 2)}}
    with tempfile.TemporaryDirectory() as workdir:
        convert_all(Job(model, representative, p.convert, logs, Path(workdir)), p.convert.variants, labels, metrics)
    files.write_json(paths.CONVERT_METRICS, metrics)
    return metrics


def convert_all(job: Job, names: list, labels: list, metrics: dict) -> None:
    """Each variant of convert.variants by its converter, written with its metadata."""
    for variant in names:
        print(f"converting {variant} ...", flush=True)
        started, spec = time.time(), variants.VARIANTS[variant]
        log = job.logs[spec.runtime]
        try:
            with files.output_to(log):
                measured = CONVERTERS[spec.converter](job, variant)
        except Exception as e:  # a converter's errors run to pages: its first line here, the rest in the log
            first = str(e).strip().split("\n", 1)[0][:200]
            raise cli.UserError(f"converting {variant} failed: {type(e).__name__}: {first} (details in {log})") from e
        job.converted.add(variant)
        dest = variants.model_path(variant)
        metrics[variant] = {
            "size_mb": round(dest.stat().st_size / 2**20, 2),
            "convert_seconds": round(time.time() - started, 1),
        } | measured
        write_metadata(variant, labels, job.model.input_shape[1])
        print(f"  {dest}: {metrics[variant]['size_mb']} MiB in {metrics[variant]['convert_seconds']} s")


def write_metadata(variant: str, labels: list, input_size: int) -> None:
    """<variant>.json beside the model file: what the function answers with (its labels, in output
    order), and the variant and content hash it reports. Deploy ships it as model.json."""
    path = variants.model_path(variant)
    meta = {"variant": variant, "sha256": files.sha256(path), "labels": labels, "input_size": input_size}
    files.write_json(variants.metadata_path(variant), meta)


def main() -> None:
    convert(paths.MODEL, params.load())


if __name__ == "__main__":
    cli.run(main)
