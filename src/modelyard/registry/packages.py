"""The registry's one coupling to model packages: read a package's manifest, if it is one."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["PACKAGE_SUFFIX", "inspect_package", "is_package_name"]

PACKAGE_SUFFIX = ".modelyard"


def is_package_name(filename: str) -> bool:
    return filename.endswith(PACKAGE_SUFFIX)


def inspect_package(path: Path) -> dict[str, Any] | None:
    """The verified manifest of the package at ``path`` as JSON data; None if it is not a package.

    A file named ``*.modelyard`` that fails verification raises :class:`modelyard.errors.PackageInvalid`.
    ``modelyard.package`` is imported only here, and only when needed.
    """
    if not is_package_name(path.name):
        return None
    try:
        package = importlib.import_module("modelyard.package")
    except ImportError:  # packages are an optional part of the installation
        return None
    verify = getattr(package, "verify_package", None)
    if verify is None:
        return None
    manifest = verify(path)
    data: dict[str, Any] = manifest.model_dump(mode="json")
    return data
