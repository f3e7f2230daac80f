"""Unpack each package once into ``<home>/packages/<sha256 of the package file>/``.

The home is ``$MODELYARD_HOME``, else ``~/.modelyard``. A package is unpacked (and verified) into a
temporary folder that is renamed into place, so a folder in the cache is always complete; it is
re-checked file by file every time it is used, against a ``manifest.json`` that must be byte for
byte the one inside the package file, so a cached copy edited in place (its manifest included) is
refused too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import PackageInvalid
from modelyard.package.archive import (
    FILES_DIR,
    Limits,
    manifest_bytes,
    read_manifest,
    unpack_package,
    verify_tree,
)
from modelyard.package.manifest import MANIFEST_NAME, Manifest

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
        return CachedPackage(root, _recheck(path, root, limits), digest)
    try:
        manifest = unpack_package(path, root, limits)
    except FileExistsError:  # another process unpacked the same package first
        if not root.is_dir():
            raise
        manifest = _recheck(path, root, limits)
    return CachedPackage(root, manifest, digest)


def _recheck(path: Path, root: Path, limits: Limits | None) -> Manifest:
    """The cached copy's files, checked against the manifest in the package itself.

    The cached ``manifest.json`` can be edited as easily as the files, so it must be byte for byte
    the one the package holds (reading it costs only the archive's first member).
    """
    expected = manifest_bytes(read_manifest(path, limits))
    cached = root / MANIFEST_NAME
    if not cached.is_file() or cached.is_symlink() or cached.read_bytes() != expected:
        raise PackageInvalid(
            f"the cached {MANIFEST_NAME} in {root} is not the package's own: the cached copy was altered",
            field=MANIFEST_NAME,
        )
    return verify_tree(root)
