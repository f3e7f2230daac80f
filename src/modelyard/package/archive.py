"""The ``.modelyard`` file: a deterministic gzip'd tar, and the one safe, verifying way to read it.

Writing: ``manifest.json`` first, then ``files/...`` sorted; every member a regular file with
mtime 0, uid/gid 0, no owner names, mode 0644; gzip header mtime 0 and no file name. The same
manifest and file bytes therefore give the same package bytes (the registry addresses packages
by their SHA-256).

Reading streams the archive once (``r|gz``) and refuses, while reading and before anything is
written: a first member other than ``manifest.json``, members outside ``files/``, absolute or
``..`` paths, anything but regular files (symlinks, hard links, devices, FIFOs), duplicates, and
archives over the member-count or total-size limits.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from modelyard.errors import PackageInvalid
from modelyard.package.manifest import MANIFEST_NAME, Manifest, check_member_path

__all__ = [
    "FILES_DIR",
    "Limits",
    "read_manifest",
    "sha256_file",
    "unpack_package",
    "verify_package",
    "verify_tree",
    "write_package",
]

FILES_DIR = "files"
_CHUNK = 1 << 20
_MANIFEST_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Limits:
    """The most a package may unpack to; checked member by member while the archive is read."""

    max_members: int = 100_000
    max_total_bytes: int = 64 << 30  # 64 GiB: large models are fine, a gzip bomb is not


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- writing -----------------------------------------------------------------------------------


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical JSON of a manifest: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_package(manifest: Manifest, sources: Mapping[str, Path], out: Path) -> Path:
    """Write ``out`` atomically: ``manifest.json`` and each ``files/<path>`` from ``sources``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as raw:
        try:
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = manifest_bytes(manifest)
                tar.addfile(_member(MANIFEST_NAME, len(data)), io.BytesIO(data))
                for rel in sorted(sources):
                    source = sources[rel]
                    with source.open("rb") as handle:
                        tar.addfile(_member(f"{FILES_DIR}/{rel}", source.stat().st_size), handle)
        except BaseException:
            Path(raw.name).unlink(missing_ok=True)
            raise
    Path(raw.name).replace(out)
    return out


# -- reading -----------------------------------------------------------------------------------


def _open(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise PackageInvalid(f"package not found: {path}", field=str(path))
    try:
        return tarfile.open(path, mode="r|gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageInvalid(
            f"{path} is not a modelyard package (gzip'd tar): {exc}", field=str(path)
        ) from None


def _members(tar: tarfile.TarFile, path: Path, limits: Limits) -> Iterator[tarfile.TarInfo]:
    """Every member after checking it is safe, counting toward the limits as it goes."""
    seen: set[str] = set()
    total = 0
    try:
        for count, info in enumerate(tar, start=1):
            if count > limits.max_members:
                raise PackageInvalid(f"{path} has more than {limits.max_members} members", field=info.name)
            _check_member(info, seen)
            total += info.size
            if total > limits.max_total_bytes:
                raise PackageInvalid(
                    f"{path} unpacks to more than {limits.max_total_bytes} bytes", field=info.name
                )
            yield info
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise PackageInvalid(f"{path} is corrupt: {exc}", field=str(path)) from None


def _check_member(info: tarfile.TarInfo, seen: set[str]) -> None:
    name = info.name
    if not seen and name != MANIFEST_NAME:
        raise PackageInvalid(f"the first member must be {MANIFEST_NAME}, found {name!r}", field=name)
    problem = check_member_path(name)
    if problem:
        raise PackageInvalid(f"member {name!r} {problem}: refusing to unpack it", field=name)
    if name != MANIFEST_NAME and not name.startswith(f"{FILES_DIR}/"):
        raise PackageInvalid(f"member {name!r} is outside {FILES_DIR}/", field=name)
    if not info.isreg():
        raise PackageInvalid(f"member {name!r} is not a regular file (link or device): refused", field=name)
    if name in seen:
        raise PackageInvalid(f"member {name!r} appears twice", field=name)
    seen.add(name)


def _parse_manifest(data: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}" for err in exc.errors()
        )
        raise PackageInvalid(f"{MANIFEST_NAME} is invalid: {problems}", field=MANIFEST_NAME) from None


def _read_manifest_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> Manifest:
    if info.size > _MANIFEST_MAX_BYTES:
        raise PackageInvalid(
            f"{MANIFEST_NAME} is larger than {_MANIFEST_MAX_BYTES} bytes", field=MANIFEST_NAME
        )
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file, checked by _check_member
    return _parse_manifest(handle.read())


def read_manifest(path: Path, limits: Limits | None = None) -> Manifest:
    """The package's manifest, read from the archive's first member (nothing is unpacked or verified)."""
    path = Path(path)
    with _open(path) as tar:
        for info in _members(tar, path, limits or Limits()):
            return _read_manifest_member(tar, info)
    raise PackageInvalid(f"{path} is empty: no {MANIFEST_NAME}", field=MANIFEST_NAME)


def _copy_hashing(source: IO[bytes], sink: IO[bytes] | None) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _corruption_is_invalid(path: Path) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise PackageInvalid(f"{path} is corrupt: {exc}", field=str(path)) from None


def _walk(path: Path, limits: Limits, write: Callable[[str], IO[bytes]] | None) -> Manifest:
    """Stream the archive once, hashing (and with ``write``, writing) every file; then compare."""
    manifest: Manifest | None = None
    found: dict[str, str] = {}
    with _open(path) as tar, _corruption_is_invalid(path):
        for info in _members(tar, path, limits):
            if manifest is None:
                manifest = _read_manifest_member(tar, info)
                continue
            rel = info.name.removeprefix(f"{FILES_DIR}/")
            if rel not in manifest.files:  # refuse before writing a byte of it
                raise PackageInvalid(f"{rel!r} is in the package but not in its manifest", field=rel)
            handle = tar.extractfile(info)
            assert handle is not None
            if write is None:
                found[rel] = _copy_hashing(handle, None)
            else:
                with write(rel) as sink:
                    found[rel] = _copy_hashing(handle, sink)
    if manifest is None:
        raise PackageInvalid(f"{path} is empty: no {MANIFEST_NAME}", field=MANIFEST_NAME)
    compare_files(manifest, found)
    return manifest


def compare_files(manifest: Manifest, found: Mapping[str, str]) -> None:
    """Raise :class:`PackageInvalid` naming the first file that is missing, extra or changed."""
    for rel in sorted(manifest.files):
        if rel not in found:
            raise PackageInvalid(f"{rel!r} is listed in the manifest but missing from the package", field=rel)
        if found[rel] != manifest.files[rel]:
            raise PackageInvalid(
                f"{rel!r} was altered: its SHA-256 is {found[rel]}, the manifest says {manifest.files[rel]}",
                field=rel,
            )
    for rel in sorted(set(found) - set(manifest.files)):
        raise PackageInvalid(f"{rel!r} is in the package but not in its manifest", field=rel)


def verify_package(path: Path, limits: Limits | None = None) -> Manifest:
    """Check every file's checksum against the manifest without unpacking; the manifest if all match."""
    return _walk(Path(path), limits or Limits(), None)


def unpack_package(path: Path, dest: Path, limits: Limits | None = None) -> Manifest:
    """Verify and unpack into ``dest`` (created; must not exist): ``dest/manifest.json``, ``dest/files/``.

    The files are written to a temporary sibling folder that is renamed to ``dest`` only once every
    checksum matched, so ``dest`` never holds a partial or altered package.
    """
    path, dest = Path(path), Path(dest)
    if dest.exists():
        raise FileExistsError(f"cannot unpack into {dest}: it already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    try:

        def write(rel: str) -> IO[bytes]:
            target = staging / FILES_DIR / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            return target.open("xb")

        manifest = _walk(path, limits or Limits(), write)
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes(manifest))
        try:
            staging.rename(dest)
        except OSError:
            if dest.exists():  # someone else unpacked it first (rename onto a full folder fails)
                raise FileExistsError(f"cannot unpack into {dest}: it already exists") from None
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def verify_tree(root: Path) -> Manifest:
    """Check an unpacked package folder (``root/manifest.json`` + ``root/files``) file by file."""
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise PackageInvalid(f"{root} has no {MANIFEST_NAME}", field=MANIFEST_NAME)
    manifest = _parse_manifest(manifest_path.read_bytes())
    files_dir = root / FILES_DIR
    found: dict[str, str] = {}
    for p in sorted(files_dir.rglob("*")):
        rel = p.relative_to(files_dir).as_posix()
        if p.is_symlink():  # hashing would follow it out of the folder
            raise PackageInvalid(f"{rel!r} in {root} is a symbolic link", field=rel)
        if p.is_file():
            found[rel] = sha256_file(p)
    compare_files(manifest, found)
    return manifest
