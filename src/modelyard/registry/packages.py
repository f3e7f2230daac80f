"""The registry's one coupling to model packages: read a package's manifest, if it is one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PACKAGE_SUFFIX", "inspect_package", "is_package_name"]

PACKAGE_SUFFIX = ".modelyard"


def is_package_name(filename: str) -> bool:
    return filename.endswith(PACKAGE_SUFFIX)


def inspect_package(path: Path) -> dict[str, Any] | None:
    """The verified manifest of the package at ``path`` as JSON data; None if it is not a package.

    A file named ``*.modelyard`` that fails verification raises :class:`modelyard.errors.PackageInvalid`.
    """
    if not is_package_name(path.name):
        return None
    # Here, not at the top: the package plane (and numpy, through the SDK's tensor type) loads only
    # when a package is uploaded, not for every registry read.
    from modelyard.package.archive import verify_package

    manifest = verify_package(path)
    data: dict[str, Any] = manifest.model_dump(mode="json")
    return data
