"""Unpack each package once into ``<home>/packages/<sha256 of the package file>/``.

The home is ``$MODELYARD_HOME``, else ``~/.modelyard``. A package is unpacked (and verified) into a
temporary folder that is renamed into place, so a folder in the cache is always complete; it is
re-checked file by file every time it is used, so a cached copy edited in place is refused too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.package.archive import FILES_DIR, Limits, unpack_package, verify_tree
from modelyard.package.manifest import Manifest

__all__ = ["CachedPackage", "modelyard_home", "package_digest", "unpack_cached"]


def modelyard_home() -> Path:
    """``$MODELYARD_HOME`` or ``~/.modelyard``: where unpacked packages and environments are kept."""
    configured = os.environ.get("MODELYARD_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".modelyard"


def package_digest(path: Path) -> str:
    """The hex SHA-256 of the package file's bytes (its identity in the cache and the registry)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CachedPackage:
    """An unpacked, verified package: ``root/manifest.json`` and the model's files in ``files``."""

    root: Path
    manifest: Manifest
    digest: str

    @property
    def files(self) -> Path:
        return self.root / FILES_DIR


def unpack_cached(path: Path, home: Path | None = None, limits: Limits | None = None) -> CachedPackage:
    """The package unpacked under ``<home>/packages/<sha256>/``, unpacking it only the first time."""
    digest = package_digest(path)
    root = (home or modelyard_home()) / "packages" / digest
    if root.is_dir():
        return CachedPackage(root, verify_tree(root), digest)
    try:
        manifest = unpack_package(path, root, limits)
    except FileExistsError:  # another process unpacked the same package first
        manifest = verify_tree(root)
    return CachedPackage(root, manifest, digest)
