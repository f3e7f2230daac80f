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
import logging
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput, Unsupported
from modelyard.runtimes.devices import Device, cpu_only, onnx_providers, torch_device
from modelyard.runtimes.formats import SUFFIXES
from modelyard.runtimes.sources import load_source
from modelyard.sdk import BatchSpec, ModelSpec
from modelyard.server.settings import ModelConfig, Settings

__all__ = ["refuse_device_for_class", "spec_from_file"]

log = logging.getLogger("modelyard.runtimes")


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
    device = _checked_device(kind, config.device or settings.device, name)
    cls, platform = _runtime_class(kind)
    kwargs: dict[str, Any] = {"path": str(path), "name": name, "version": version}
    if kind != "sklearn":
        kwargs["intra_op_threads"] = settings.intra_op_threads
        kwargs["device"] = device
    spec = ModelSpec.from_class(cls, name=name, version=version, platform=platform)
    return spec.replace(batching=batching, init_kwargs=kwargs)


def _checked_device(kind: str, text: str, name: str) -> str:
    """``text``, once it is known that this runtime and this machine's library can give that
    device: a GPU that is not there fails the start (``modelyard serve`` exits 2), before anything
    loads. The runtime resolves ``auto`` when it loads, and checks the device again."""
    device = Device.parse(text)
    try:
        if kind == "sklearn":
            if device.kind == "auto":
                log.info("model %s: device auto: runs on cpu (scikit-learn runs on the CPU only)", name)
            return cpu_only(device, "scikit-learn")
        if device.gpu and kind == "onnx":
            import onnxruntime as ort

            onnx_providers(device, ort.get_available_providers())
        elif device.gpu:
            try:
                import torch
            except ImportError:
                return text  # the load says which extra to install
            torch_device(torch, device)
    except Unsupported as exc:
        raise Unsupported(f"model '{name}': {exc.message}", field="device") from None
    return text


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
    refuse_device_for_class(config)
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


def refuse_device_for_class(config: ModelConfig) -> None:
    """A model's own ``device`` is for the zero-code runtimes: a model class places itself (in its
    ``load``), so asking one for a GPU would be silently ignored. The server-wide setting is not an
    error here: it applies to the server's file models and leaves classes alone."""
    if config.device not in (None, "cpu"):
        raise InvalidInput(
            f"'{config.path}' is a model class, which picks its own device in load(): device"
            f" {config.device!r} applies to model files (.onnx, .pt2, .pt, ...) only",
            field="device",
        )
