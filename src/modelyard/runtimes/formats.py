"""Which runtime serves which model file, by suffix. Imports nothing: the package builder reads it
to find the model file in a folder, the loader to pick the runtime."""

from __future__ import annotations

__all__ = ["SUFFIXES"]

SUFFIXES = {
    ".onnx": "onnx",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".pt2": "torch_export",
}
