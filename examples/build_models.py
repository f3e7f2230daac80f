"""Write the example models into examples/models/: a small ONNX network and a scikit-learn classifier."""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

OUT = Path(__file__).resolve().parent / "models"


def build_onnx(path: Path) -> None:
    """y = softmax(relu(x W1 + b1) W2 + b2): 4 features in, 3 class probabilities out."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(16, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def build_sklearn(path: Path) -> None:
    features, labels = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(features, labels), path)


def main() -> list[Path]:
    OUT.mkdir(exist_ok=True)
    onnx_path, sk_path = OUT / "tiny_mlp.onnx", OUT / "iris.joblib"
    build_onnx(onnx_path)
    build_sklearn(sk_path)
    return [onnx_path, sk_path]


if __name__ == "__main__":
    for p in main():
        print(p, file=sys.stdout)
