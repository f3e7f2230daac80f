"""Serve an ``.onnx`` file with onnxruntime, with no code. The signature is read from the model.

The ``device`` picks onnxruntime's execution providers (``runtimes/devices.py``): the CPU's by
default, CUDA's (``cuda[:N]``) or TensorRT's then CUDA's (``tensorrt[:N]``) ahead of the CPU's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from modelyard.runtimes.devices import Device, onnx_providers, onnx_session_device
from modelyard.sdk import ModelMetadata, TensorSpec

__all__ = ["OnnxModel", "onnx_datatype"]

log = logging.getLogger("modelyard.runtimes")

_ONNX_TYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def onnx_datatype(onnx_type: str) -> str:
    try:
        return _ONNX_TYPES[onnx_type]
    except KeyError:
        raise ValueError(f"onnx type {onnx_type} is not supported") from None


def _dims(shape: list[Any]) -> list[int]:
    # Symbolic ("batch") and unknown (None) dimensions are variable: -1.
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


class OnnxModel:
    """A model class like any author's: load, metadata, warmup, and a stacked, batched predict."""

    def __init__(
        self, path: str, name: str, version: str = "1", intra_op_threads: int = 1, device: str = "cpu"
    ) -> None:
        self.path = path
        self.name = name
        self.version = version
        self.intra_op_threads = intra_op_threads
        self.device = "cpu"  # where it runs, once loaded: cpu, cuda:N or tensorrt:N
        self._asked = device  # cpu, cuda[:N], tensorrt[:N] or auto
        self.session: Any = None
        self._strings: set[str] = set()

    def load(self) -> None:
        """Open the session on the device asked for; a GPU that is not there is refused (``device``)."""
        import onnxruntime as ort

        asked = Device.parse(self._asked)
        providers = onnx_providers(asked, ort.get_available_providers())
        options = ort.SessionOptions()
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=providers)
        used = self.session.get_providers()
        self.device = onnx_session_device(asked, providers, used)
        if asked.kind == "auto":
            log.info(
                "model %s: device auto: runs on %s (providers in use: %s; in this onnxruntime build: %s)",
                self.name, self.device, ", ".join(used), ", ".join(ort.get_available_providers()),
            )  # fmt: skip
        self._strings = {i.name for i in self.session.get_inputs() if i.type == "tensor(string)"}

    def metadata(self) -> ModelMetadata:
        inputs = [
            TensorSpec(i.name, onnx_datatype(i.type), _dims(i.shape)) for i in self.session.get_inputs()
        ]
        outputs = [
            TensorSpec(o.name, onnx_datatype(o.type), _dims(o.shape)) for o in self.session.get_outputs()
        ]
        meta = self.session.get_modelmeta()
        labels = {str(k): str(v) for k, v in (meta.custom_metadata_map or {}).items()}
        labels["device"] = self.device  # where it runs, which `auto` leaves to the machine
        return ModelMetadata(
            name=self.name,
            version=self.version,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            platform="onnxruntime_onnx",
            labels=labels,
        )

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: self._feedable(name, value) for name, value in inputs.items()}
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed), strict=True))

    def warmup(self) -> None:
        """One batch of zeros through the graph, so the first real request pays no set-up cost."""
        from modelyard.dtypes import numpy_dtype

        feed = {}
        for spec in self.metadata().inputs:
            shape = [1 if d < 0 else d for d in spec.shape]
            if spec.datatype == "BYTES":
                feed[spec.name] = np.full(shape, "", dtype=object)
            else:
                feed[spec.name] = np.zeros(shape, dtype=numpy_dtype(spec.datatype))
        self.session.run(None, feed)

    def _feedable(self, name: str, value: np.ndarray) -> np.ndarray:
        if name in self._strings and value.dtype == object:
            decoded = [v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel()]
            strings: np.ndarray = np.array(decoded, dtype=object).reshape(value.shape)
            return strings
        return value
