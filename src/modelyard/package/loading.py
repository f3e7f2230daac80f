"""From a model path to a :class:`ModelSpec`: a ``.modelyard`` package is verified, unpacked once
into the cache and served like its contents; anything else goes to the runtimes' loader.

The one entry the model server uses (``server/app.py``), so packages depend on runtimes and never
the other way round.
"""

from __future__ import annotations

import errno
import importlib
import inspect
from pathlib import Path

from modelyard.errors import PackageInvalid
from modelyard.package.cache import unpack_cached
from modelyard.package.manifest import PACKAGE_SUFFIX, Manifest
from modelyard.runtimes.loader import refuse_device_for_class, spec_from_file
from modelyard.sdk import ModelSpec
from modelyard.server.settings import ModelConfig, Settings

__all__ = ["spec_from_config", "spec_from_path"]


def spec_from_path(path: str, name: str | None = None, version: str | None = None) -> ModelSpec:
    """The spec for one file with default settings (see :func:`spec_from_config`)."""
    return spec_from_config(ModelConfig(path=path, name=name, version=version), Settings())


def spec_from_config(config: ModelConfig, settings: Settings) -> ModelSpec:
    """Build the spec for one configured model; nothing is loaded until the server starts."""
    if config.path.endswith(PACKAGE_SUFFIX):
        return _package_spec(config, settings)
    return spec_from_file(config, settings)


def _package_spec(config: ModelConfig, settings: Settings) -> ModelSpec:
    """A ``.modelyard`` package: verified, unpacked once into the cache, then served like its contents.

    The manifest's name and version are the defaults; the config's override them.
    """
    if not Path(config.path).is_file():
        raise FileNotFoundError(errno.ENOENT, "model package not found", config.path)
    package = unpack_cached(Path(config.path))
    manifest = package.manifest
    inner = config.model_copy(
        update={"name": config.name or manifest.name, "version": config.version or manifest.version}
    )
    if manifest.model_file is not None:
        return spec_from_file(
            inner.model_copy(update={"path": str(package.files / manifest.model_file)}), settings
        )
    assert manifest.entry is not None  # the manifest has exactly one of model_file and entry
    if not manifest.entry_is_module:
        entry = inner.model_copy(update={"path": f"{package.files}/{manifest.entry}"})
        return spec_from_file(entry, settings)
    return _module_entry_spec(inner, manifest, str(package.files))


def _module_entry_spec(config: ModelConfig, manifest: Manifest, files: str) -> ModelSpec:
    """A package whose entry is a class inside modelyard (``modelyard.x:Cls``), made with ``model_dir``."""
    refuse_device_for_class(config)
    module_name, _, attr = (manifest.entry or "").partition(":")
    cls = getattr(importlib.import_module(module_name), attr, None)
    if not inspect.isclass(cls):
        raise PackageInvalid(f"package entry {manifest.entry} is not a class", field="entry")
    signature = manifest.signature
    spec = ModelSpec.from_class(
        cls,
        name=config.name,
        version=config.version,
        inputs=tuple(signature.inputs),
        outputs=tuple(signature.outputs),
        platform=getattr(cls, "platform", "modelyard_python"),
        labels=dict(manifest.labels),
    )
    return spec.replace(init_kwargs={"model_dir": files, "signature": signature.model_dump()})
