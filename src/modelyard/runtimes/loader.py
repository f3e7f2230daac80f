"""Turn a model file (or ``file.py:Class``) into a :class:`ModelSpec`, choosing the runtime by suffix.

| suffix                                | runtime                                   |
|---------------------------------------|-------------------------------------------|
| ``.onnx``                             | onnxruntime (:mod:`modelyard.runtimes.onnx`) |
| ``.joblib``, ``.pkl``, ``.pickle``    | scikit-learn (loading a pickle runs code!) |
| ``.pt``, ``.pth``, ``.ts``            | TorchScript                               |
| ``.pt2``                              | a ``torch.export`` program                |
| ``path/to/file.py:Name``              | the author's own ``@model`` class         |
| ``.modelyard``                        | a package: verified, unpacked, then as above |
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from modelyard.errors import InvalidInput, PackageInvalid
from modelyard.package.manifest import PACKAGE_SUFFIX, Manifest
from modelyard.sdk import BatchSpec, ModelSpec, TensorSpec
from modelyard.server.settings import ModelConfig, Settings

__all__ = ["SUFFIXES", "load_source", "spec_from_config", "spec_from_path"]

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


def spec_from_path(path: str, name: str | None = None, version: str | None = None) -> ModelSpec:
    """The spec for one file with default settings (see :func:`spec_from_config`)."""
    return spec_from_config(ModelConfig(path=path, name=name, version=version), Settings())


def spec_from_config(config: ModelConfig, settings: Settings) -> ModelSpec:
    """Build the spec for one configured model; nothing is loaded until the server starts."""
    if config.path.endswith(PACKAGE_SUFFIX):
        return _package_spec(config, settings)
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


def _package_spec(config: ModelConfig, settings: Settings) -> ModelSpec:
    """A ``.modelyard`` package: verified, unpacked once into the cache, then served like its contents.

    The manifest's name and version are the defaults; the config's override them.
    """
    from modelyard.package.cache import unpack_cached

    if not Path(config.path).is_file():
        raise FileNotFoundError(errno.ENOENT, "model package not found", config.path)
    package = unpack_cached(Path(config.path))
    manifest = package.manifest
    inner = config.model_copy(
        update={"name": config.name or manifest.name, "version": config.version or manifest.version}
    )
    if manifest.model_file is not None:
        return spec_from_config(
            inner.model_copy(update={"path": str(package.files / manifest.model_file)}), settings
        )
    assert manifest.entry is not None  # the manifest has exactly one of model_file and entry
    if not manifest.entry_is_module:
        return _python_spec(inner.model_copy(update={"path": f"{package.files}/{manifest.entry}"}))
    return _module_entry_spec(inner, manifest, str(package.files))


def _module_entry_spec(config: ModelConfig, manifest: Manifest, files: str) -> ModelSpec:
    """A package whose entry is a class inside modelyard (``modelyard.x:Cls``), made with ``model_dir``."""
    module_name, _, attr = (manifest.entry or "").partition(":")
    cls = getattr(importlib.import_module(module_name), attr, None)
    if not inspect.isclass(cls):
        raise PackageInvalid(f"package entry {manifest.entry} is not a class", field="entry")
    signature = manifest.signature
    spec = ModelSpec.from_class(
        cls,
        name=config.name,
        version=config.version,
        inputs=tuple(TensorSpec(t.name, t.datatype, t.shape) for t in signature.inputs),
        outputs=tuple(TensorSpec(t.name, t.datatype, t.shape) for t in signature.outputs),
        platform=getattr(cls, "platform", "modelyard_python"),
        labels=dict(manifest.labels),
    )
    return spec.replace(init_kwargs={"model_dir": files, "signature": signature.model_dump()})


def _runtime_class(kind: str) -> tuple[type, str]:
    if kind == "onnx":
        from modelyard.runtimes.onnx import OnnxModel

        return OnnxModel, "onnxruntime_onnx"
    if kind == "sklearn":
        from modelyard.runtimes.sklearn import SklearnModel

        return SklearnModel, "sklearn_sklearn"
    from modelyard.runtimes.torch import TorchModel

    return TorchModel, "pytorch_torchscript" if kind == "torchscript" else "pytorch_export"


def load_source(module_path: Path) -> ModuleType:
    """Import an author's ``.py`` file as a module of its own (the file's folder need not be on sys.path).

    The module name includes a hash of the file's path, so two packages that both ship a
    ``model.py`` never replace each other's module in ``sys.modules``.
    """
    if not module_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "model source not found", str(module_path))
    tag = hashlib.sha256(str(module_path.resolve()).encode()).hexdigest()[:12]
    module_name = f"modelyard_user_{module_path.stem}_{tag}"
    spec = importlib.util.spec_from_file_location(module_name, module_path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {module_path} as a Python module", field="path")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


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
