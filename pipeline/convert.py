"""Stage convert: the Keras model to TFLite float32, float16, dynamic-range int8 and full int8, and to
ONNX float32 and int8 (pipeline/onnx_convert.py) for the onnx_* variants."""

import functools
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
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


def converter_for(source, variant: str, representative: np.ndarray, int8_io: str):
    """source: a Keras model, or the folder export_for_tflite wrote."""
    if isinstance(source, Path):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(source))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(source)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in ("full_int8", "full_int8_leaky"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io in INT8_IO:
            converter.inference_input_type = INT8_IO[int8_io]
            converter.inference_output_type = INT8_IO[int8_io]
    return converter


def convert(model_path: str, p: params.Params) -> dict:
    if not Path(model_path).exists():
        raise cli.UserError(f"{model_path} not found: run the train stage first (dvc repro train)")
    model = keras.models.load_model(model_path, compile=False)
    size, labels = model.input_shape[1], dataset.model_labels()
    representative = np.zeros((0, size, size, 3), np.float32)
    if {"full_int8", "full_int8_leaky", "onnx_int8"} & set(p.convert.variants):  # every int8 calibrates on these
        images, _, _ = dataset.load_split(dataset.read_manifest(), "train", size, labels)
        pick = np.random.default_rng(0).permutation(len(images))[: p.convert.representative_images]
        representative = scale(images[pick])

    out_dir = Path(paths.TFLITE_DIR)
    for folder in (out_dir, Path(paths.ONNX_DIR)):  # both are dvc.yaml outs, even when no variant lands in one
        folder.mkdir(parents=True, exist_ok=True)
    log = out_dir / "convert.log"
    log.unlink(missing_ok=True)
    onnx_log = Path(paths.ONNX_DIR) / "convert.log"
    onnx_log.unlink(missing_ok=True)
    metrics = {"keras": {"size_mb": round(Path(model_path).stat().st_size / 2**20, 2)}}
    with tempfile.TemporaryDirectory() as exported:
        convert_all(model, p, representative, labels, Path(exported) / "saved_model", (log, onnx_log), metrics)
    files.write_json(paths.CONVERT_METRICS, metrics)
    return metrics


def convert_all(model, p, representative, labels: list, saved_model: Path, logs: tuple, metrics: dict) -> None:
    """Each variant of convert.variants, written with its metadata; the float TFLite ones from one export."""
    size, (log, onnx_log) = model.input_shape[1], logs
    for variant in p.convert.variants:
        print(f"converting {variant} ...", flush=True)
        started = time.time()
        if variants.runtime(variant) == "onnxruntime":
            done = "onnx_float32" in metrics
            metrics[variant] = convert_onnx(model, variant, representative, onnx_log, done, p.convert.onnx_reduce_range)
            metrics[variant]["convert_seconds"] = round(time.time() - started, 1)
            write_metadata(variant, labels, size)
            print(f"  {variants.model_path(variant)}: {metrics[variant]['size_mb']} MiB")
            continue
        try:
            with files.output_to(log):
                # full_int8_leaky: the residual ReLUs as LeakyReLU, no retraining (pipeline/relu_swap.py)
                leaky = variant == "full_int8_leaky"
                if leaky:
                    source, swapped = swap_residual_relus(model, p.convert.leaky_slope)
                else:
                    source, swapped = saved_model if saved_model.exists() else export_for_tflite(model, saved_model), 0
                flatbuffer = converter_for(source, variant, representative, p.convert.int8_io).convert()
        except Exception as e:  # the converter's errors are long; the log holds the detail
            raise cli.UserError(f"converting {variant} failed: {type(e).__name__} (details in {log})") from e
        dest = variants.model_path(variant)
        with files.atomic_path(dest) as tmp:
            tmp.write_bytes(flatbuffer)
        metrics[variant] = {
            "size_mb": round(len(flatbuffer) / 2**20, 2),
            "convert_seconds": round(time.time() - started, 1),
        } | ({"swapped_relus": swapped} if leaky else {})
        write_metadata(variant, labels, size)
        print(f"  {dest}: {metrics[variant]['size_mb']} MiB in {metrics[variant]['convert_seconds']} s")


def write_metadata(variant: str, labels: list, input_size: int) -> None:
    """<variant>.json beside the model file: what the function answers with (its labels, in output
    order), and the variant and content hash it reports. Deploy ships it as model.json."""
    path = variants.model_path(variant)
    meta = {"variant": variant, "sha256": files.sha256(path), "labels": labels, "input_size": input_size}
    files.write_json(variants.metadata_path(variant), meta)


def convert_onnx(
    model, variant: str, representative: np.ndarray, log: Path, float32_done: bool, reduce_range: bool
) -> dict:
    """float32_done: onnx_float32 was exported earlier in this run (int8 quantizes that export, never a
    file left by an earlier run); reduce_range: convert.onnx_reduce_range."""
    dest = variants.model_path(variant)
    try:
        if variant == "onnx_float32":
            onnx_convert.export_float32(model, dest, log)
        elif float32_done:
            onnx_convert.quantize_int8(variants.model_path("onnx_float32"), dest, representative, log, reduce_range)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                onnx_convert.export_float32(model, Path(tmp) / "float32.onnx", log)
                onnx_convert.quantize_int8(Path(tmp) / "float32.onnx", dest, representative, log, reduce_range)
    except Exception as e:
        raise cli.UserError(f"converting {variant} failed: {type(e).__name__}: {e} (details in {log})") from e
    return {"size_mb": round(dest.stat().st_size / 2**20, 2)}


def main() -> None:
    convert(paths.MODEL, params.load())


if __name__ == "__main__":
    cli.run(main)
