"""The Keras model to ONNX: float32 (Keras' own export, tf2onnx underneath) and int8 (ONNX Runtime's
static quantization). Called by the convert stage for the onnx_* variants.

What makes ONNX Runtime's int8 fast on x86 CPUs (measured, docs/toolchain.md and docs/results.md):
- QDQ format, not QOperator: QOperator runs but is numerically broken on this model (top-1
  agreement 0.45). ONNX Runtime fuses each QuantizeLinear/DequantizeLinear pair around a Conv or
  MatMul into its integer kernel when the session loads: graph optimization level EXTENDED or
  ALL (the default, which serving.runtime sets explicitly). 96 px, 2 idle Xeon cores: DISABLE_ALL
  26.3 ms, BASIC 23.0, EXTENDED 7.3, ALL 3.5.
- uint8 activations with int8 weights (U8S8): the combination the x86 integer kernels (VNNI)
  are built for; S8S8 is ~1.4x slower here.
- per-channel weight scales: the separable convolutions' channels differ in range by orders of
  magnitude; per-tensor scales lose accuracy.
- quant_pre_process first (symbolic shape inference + ONNX Runtime's own graph optimizations, which
  fold BatchNorm into the convolutions): without it the quantizer puts QDQ pairs around the
  BatchNorms and the graph cannot fuse.
- static calibration (MinMax) on the representative photos the LiteRT full int8 uses. Dynamic
  quantization is slower than float32 here (activations quantized at run time).
- reduce_range (convert.onnx_reduce_range): 7-bit weights. x86 CPUs without VNNI (AVX2, and AVX-512
  without VNNI) multiply uint8 by int8 with vpmaddubsw, which adds each pair of products into 16
  bits and saturates: 255 x 127 x 2 overflows, 255 x 63 x 2 cannot. Without it the same model
  answers differently on an AVX2-only Lambda host than on a VNNI or arm64 one (the targets stage,
  docs/targets.md has the numbers).
"""

import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from pipeline import files


class Photos(CalibrationDataReader):
    """The representative photos one at a time (batch 1, as the function serves)."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name, self.images, self.next = input_name, images.astype(np.float32), 0

    def get_next(self):
        if self.next >= len(self.images):
            return None
        self.next += 1
        return {self.input_name: self.images[self.next - 1 : self.next]}

    def rewind(self):
        self.next = 0


def export_float32(model, dest: Path, log: Path) -> None:
    """Keras' own ONNX export of the model (a called model: the export traces it)."""
    model.predict(np.zeros((1, *model.input_shape[1:]), np.float32), verbose=0)
    with files.atomic_path(dest) as tmp, files.output_to(log):
        model.export(str(tmp), format="onnx", verbose=False)


def quantize_int8(float_path: Path, dest: Path, representative: np.ndarray, log: Path, reduce_range: bool) -> None:
    """Static QDQ quantization: per-channel int8 weights (7-bit with reduce_range), uint8 activations,
    calibrated on photos."""
    import onnx

    if len(representative) == 0:
        raise ValueError("onnx_int8 needs representative photos (convert.representative_images)")
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp_dir, files.output_to(log):
        prepared = Path(tmp_dir) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        with files.atomic_path(dest) as tmp:
            quantize_static(
                str(prepared),
                str(tmp),
                Photos(input_name, representative),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                reduce_range=reduce_range,
            )
