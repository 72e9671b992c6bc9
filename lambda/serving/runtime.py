"""Run a .tflite model with LiteRT (ai_edge_litert): the runtime the Lambda uses. No TensorFlow.

Copied into the Lambda image beside images.py; the verify stage uses the same class, so the
numbers it reports are the numbers the function serves.
"""

from collections import Counter

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
