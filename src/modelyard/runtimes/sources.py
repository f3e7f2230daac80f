"""Importing a model author's ``.py`` file as a module of its own."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from modelyard.errors import InvalidInput

__all__ = ["load_source"]


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
