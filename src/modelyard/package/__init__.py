"""Model packages: one versioned, verifiable ``.modelyard`` file per model version (docs/packages.md).

Build one with :func:`build_package`; read its manifest with :func:`read_manifest` (nothing is
unpacked); check every file's checksum with :func:`verify_package`; unpack it with
:func:`unpack_package`, or once into the cache with :func:`unpack_cached`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.package.archive import Limits, read_manifest, unpack_package, verify_package
    from modelyard.package.build import BuildConfig, build_package
    from modelyard.package.cache import CachedPackage, modelyard_home, package_digest, unpack_cached
    from modelyard.package.manifest import FORMAT_VERSION, PACKAGE_SUFFIX, Manifest, Signature

__all__ = [
    "FORMAT_VERSION",
    "PACKAGE_SUFFIX",
    "BuildConfig",
    "CachedPackage",
    "Limits",
    "Manifest",
    "Signature",
    "build_package",
    "modelyard_home",
    "package_digest",
    "read_manifest",
    "unpack_cached",
    "unpack_package",
    "verify_package",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FORMAT_VERSION": "manifest",
        "PACKAGE_SUFFIX": "manifest",
        "BuildConfig": "build",
        "CachedPackage": "cache",
        "Limits": "archive",
        "Manifest": "manifest",
        "Signature": "manifest",
        "build_package": "build",
        "modelyard_home": "cache",
        "package_digest": "cache",
        "read_manifest": "archive",
        "unpack_cached": "cache",
        "unpack_package": "archive",
        "verify_package": "archive",
    },
)
