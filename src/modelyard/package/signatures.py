"""A package's signature, read at build time from the model itself.

- ONNX and ``torch.export`` files record their inputs and outputs: the file is loaded with the
  serving runtime (:class:`~modelyard.runtimes.onnx.OnnxModel`, ``TorchModel``) and its
  ``metadata()`` is the signature. TorchScript records none: the signature is empty.
- scikit-learn pickles are *not* loaded at build time (unpickling runs code): empty signature.
- An author's ``@model`` class: the declared metadata, read by importing the module; ``load`` is
  never called, so weights need not be loadable on the build machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.errors import PackageInvalid
from modelyard.package.manifest import Signature
from modelyard.runtimes.sources import load_source
from modelyard.sdk import ModelMetadata, ModelSpec

__all__ = ["entry_signature", "runtime_signature"]


def runtime_signature(runtime: str, path: Path) -> Signature:
    """The signature recorded in a model file (see the module docstring)."""
    if runtime not in ("onnx", "torch_export"):
        return Signature()
    model: Any
    if runtime == "onnx":
        from modelyard.runtimes.onnx import OnnxModel

        model = OnnxModel(str(path), name="build")
    else:
        from modelyard.runtimes.torch import TorchModel

        model = TorchModel(str(path), name="build")
    try:
        model.load()
        metadata: ModelMetadata = model.metadata()
    except ImportError:
        raise
    except Exception as exc:  # a corrupt file fails here, at build time, not when served
        raise PackageInvalid(f"cannot read {path.name} as {runtime}: {exc}", field=path.name) from None
    return Signature.of(metadata)


def entry_signature(root: Path, entry: str) -> tuple[str, dict[str, Any]]:
    """``(entry, declared)`` for ``file.py:Class`` or ``file.py`` (its one ``@model`` class).

    ``declared`` holds ``signature`` and, for a ``@model`` class, its ``name`` and ``version``.
    """
    source, _, attr = entry.partition(":")
    if not source.endswith(".py") or not (root / source).is_file():
        raise PackageInvalid(f"entry {entry!r}: {source} is not a Python file in {root}", field=source)
    try:
        module = load_source(root / source)
    except Exception as exc:  # the author's module: any failure is theirs to fix, named here
        raise PackageInvalid(
            f"cannot import {source} to read its @model metadata: {type(exc).__name__}: {exc}"
            " (import heavy or optional dependencies inside load())",
            field=source,
        ) from None
    if not attr:
        specs = [key for key, value in vars(module).items() if isinstance(value, ModelSpec)]
        if len(specs) != 1:
            raise PackageInvalid(
                f"{source} defines {len(specs)} @model classes ({', '.join(specs) or 'none'});"
                " set entry: file.py:ClassName",
                field=source,
            )
        attr = specs[0]
    target = getattr(module, attr, None)
    if isinstance(target, ModelSpec):
        meta = target.metadata
        return f"{source}:{attr}", {
            "signature": Signature.of(meta),
            "name": meta.name,
            "version": meta.version,
        }
    if isinstance(target, type):
        return f"{source}:{attr}", {"signature": Signature()}
    raise PackageInvalid(f"entry {entry!r}: {source} has no class {attr!r}", field=source)
