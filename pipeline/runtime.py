"""Run a .tflite model with LiteRT (ai_edge_litert): the runtime the Lambda uses. No TensorFlow.

Copied into the Lambda image beside images.py; the verify stage uses the same class, so the
numbers it reports are the numbers the function serves.
"""

import numpy as np
from ai_edge_litert.interpreter import Interpreter


class TFLiteModel:
    """One interpreter with tensors allocated once; float or int8/uint8 input and output."""

    def __init__(self, path, num_threads: "int | None" = None):
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_size = int(self.input["shape"][1])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (1, classes) for one scaled float32 image batch (1, size, size, 3)."""
        x = batch
        if self.input["dtype"] != np.float32:
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(batch / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero_point = self.output["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        return y.astype(np.float32)

    def delegate_coverage(self) -> dict:
        """How many ops run inside the XNNPACK delegate partitions and how many outside."""
        ops = self.interpreter._get_ops_details()
        outside = [op["op_name"] for op in ops if op["op_name"] != "DELEGATE"]
        return {"partitions": len(ops) - len(outside), "ops_outside_delegate": len(outside)}
