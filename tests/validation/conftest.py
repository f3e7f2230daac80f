"""Small real models and datasets for the validation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear(path: Path, seed: int = 3, *, sign: float = 1.0, note: str = "") -> Path:
    """An ONNX model y = sign * (x @ W + b): FP32 [batch, 3] -> FP32 [batch, 2], W and b from ``seed``.

    ``note`` goes into the model's doc string: the same answers from different bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = sign * rng.normal(size=(3, 2)).astype(np.float32)
    bias = sign * rng.normal(size=(2,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=note)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def features(rows: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 3)).astype(np.float32)
