"""Turn a model file (or ``file.py:Class``) into a :class:`ModelSpec`, choosing the runtime by suffix
(``formats.SUFFIXES``); ``modelyard.package.loading`` does the same for a ``.modelyard`` package.

| suffix                                | runtime                                   |
|---------------------------------------|-------------------------------------------|
| ``.onnx``                             | onnxruntime (:mod:`modelyard.runtimes.onnx`) |
| ``.joblib``, ``.pkl``, ``.pickle``    | scikit-learn (loading a pickle runs code!) |
| ``.pt``, ``.pth``, ``.ts``            | TorchScript                               |
| ``.pt2``                              | a ``torch.export`` program                |
| ``path/to/file.py:Name``              | the author's own ``@model`` class         |
"""

from __future__ import annotations

import errno
import inspect
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.formats import SUFFIXES
from modelyard.runtimes.sources import load_source
from modelyard.sdk import BatchSpec, ModelSpec
from modelyard.server.settings import ModelConfig, Settings

__all__ = ["spec_from_file"]


def spec_from_file(config: ModelConfig, settings: Settings) -> ModelSpec:
    """Build the spec for one model file or ``file.py:Class``; nothing is loaded until the server
    starts. (A ``.modelyard`` package is unpacked first: ``modelyard.package.loading``.)"""
    if ".py:" in config.path:
        return _python_spec(config)
    path = Path(config.path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "model file not found", config.path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        formats = f"use one of {sorted(SUFFIXES)} or 'file.py:ClassName'"
        raise InvalidInput(f"cannot tell the format of '{config.path}': {formats}", field="path")
    name = config.name or path.stem
    version = config.version or "1"
    batching = BatchSpec(
        max_batch_size=config.max_batch_size or settings.default_max_batch_size,
        max_latency_ms=config.max_latency_ms
        if config.max_latency_ms is not None
        else settings.default_max_latency_ms,
        stack=True,
    )
    cls, platform = _runtime_class(kind)
    kwargs: dict[str, Any] = {"path": str(path), "name": name, "version": version}
    if kind != "sklearn":
        kwargs["intra_op_threads"] = settings.intra_op_threads
    spec = ModelSpec.from_class(cls, name=name, version=version, platform=platform)
    return spec.replace(batching=batching, init_kwargs=kwargs)


def _runtime_class(kind: str) -> tuple[type, str]:
    if kind == "onnx":
        from modelyard.runtimes.onnx import OnnxModel

        return OnnxModel, "onnxruntime_onnx"
    if kind == "sklearn":
        from modelyard.runtimes.sklearn import SklearnModel

        return SklearnModel, "sklearn_sklearn"
    from modelyard.runtimes.torch import TorchModel

    return TorchModel, "pytorch_torchscript" if kind == "torchscript" else "pytorch_export"


def _python_spec(config: ModelConfig) -> ModelSpec:
    file, _, attr = config.path.rpartition(":")
    module = load_source(Path(file))
    target = getattr(module, attr, None)
    if target is None:
        raise InvalidInput(f"{file} has no attribute '{attr}'", field="path")
    if isinstance(target, ModelSpec):
        model_spec = target
    elif inspect.isclass(target):
        model_spec = ModelSpec.from_class(target)
    else:
        raise InvalidInput(f"{config.path} is neither a @model spec nor a class", field="path")
    model_spec = model_spec.replace(name=config.name, version=config.version)
    if config.max_batch_size is not None or config.max_latency_ms is not None:
        current = model_spec.batch_spec or BatchSpec()
        model_spec = model_spec.replace(
            batching=BatchSpec(
                max_batch_size=config.max_batch_size or current.max_batch_size,
                max_latency_ms=config.max_latency_ms
                if config.max_latency_ms is not None
                else current.max_latency_ms,
                stack=current.stack,
            )
        )
    return model_spec
