"""Run a .tflite model with LiteRT (ai_edge_litert) or an .onnx model with ONNX Runtime, behind one
interface (input_size, logits(batch)). No TensorFlow.

Copied into the Lambda image beside images.py; the verify and bench stages use the same classes, so
the numbers they report are the numbers the function serves. Each runtime is imported only when a
model of its kind is loaded: the function's image carries one of them, not both.
"""

from collections import Counter
from pathlib import Path

import numpy as np


def load_model(path, num_threads: "int | None" = None) -> "TFLiteModel | ONNXModel":
    """The runner for a model file, chosen by its suffix."""
    suffix = Path(path).suffix
    if suffix == ".onnx":
        return ONNXModel(path, num_threads=num_threads)
    if suffix == ".tflite":
        return TFLiteModel(path, num_threads=num_threads)
    raise ValueError(f"{path}: unknown model kind {suffix!r} (expected .tflite or .onnx)")


class TFLiteModel:
    """One interpreter with tensors allocated once; float or int8/uint8 input and output."""

    def __init__(self, path, num_threads: "int | None" = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_size = int(self.input["shape"][1])

    def input_tensor(self, batch: np.ndarray) -> np.ndarray:
        """Scaled float32 images as the model's input type (quantized for int8/uint8 input)."""
        if self.input["dtype"] == np.float32:
            return batch.astype(np.float32)
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(self.input["dtype"])
        return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(self.input["dtype"])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (1, classes) for one scaled float32 image batch (1, size, size, 3)."""
        self.interpreter.set_tensor(self.input["index"], self.input_tensor(batch))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def delegate_coverage(self) -> dict:
        """XNNPACK partitions, and the ops that still run outside them on the built-in kernels.

        The node list keeps the replaced ops beside the DELEGATE nodes, so walk back from the
        graph outputs: an op runs outside the delegate when something needs its output and no
        delegate partition produces it.
        """
        ops = self.interpreter._get_ops_details()
        delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
        from_delegate = {int(t) for op in delegates for t in op["outputs"]}
        producer = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
        needed = [int(d["index"]) for d in self.interpreter.get_output_details()]
        needed += [int(t) for op in delegates for t in op["inputs"]]
        outside, seen = {}, set()
        while needed:
            tensor = needed.pop()
            if tensor in seen or tensor in from_delegate or tensor not in producer:
                continue
            seen.add(tensor)
            op = producer[tensor]
            outside[op["index"]] = op["op_name"]
            needed += [int(t) for t in op["inputs"] if t >= 0]
        return {
            "partitions": len(delegates),
            "ops_outside_delegate": len(outside),
            "outside_ops": dict(sorted(Counter(outside.values()).items())),
        }


class ONNXModel:
    """One ONNX Runtime session on the CPU; float32 input and output (an int8 model quantizes inside).

    Session options, measured on x86 (pipeline/onnx_convert.py says what makes int8 fast):
    graph optimization level ALL fuses the QDQ pairs into integer kernels and folds what
    quant_pre_process left; one inter-op thread (a single chain of ops has nothing to run in
    parallel); intra-op threads = num_threads, like LiteRT's.
    """

    def __init__(self, path, num_threads: "int | None" = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.input_size = int(self.input.shape[1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (n, classes) for a scaled float32 image batch (n, size, size, 3)."""
        return self.session.run(None, {self.input.name: batch.astype(np.float32)})[0].astype(np.float32)
