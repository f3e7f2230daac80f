"""The ``.modelyard`` file: a deterministic gzip'd tar, and the one safe, verifying way to read it.

Writing: ``manifest.json`` first, then ``files/...`` sorted; every member a regular file with
mtime 0, uid/gid 0, no owner names, mode 0644; gzip header mtime 0 and no file name. The same
manifest and file bytes therefore give the same package bytes (the registry addresses packages
by their SHA-256).

Reading streams the archive once (``r|gz``) and refuses, while reading and before anything is
written: a first member other than ``manifest.json``, members outside ``files/``, absolute or
``..`` paths, anything but regular files (symlinks, hard links, devices, FIFOs), duplicates, and
archives over the member-count or size limits. Each member's size is read from its header and
counted before a byte of its data is inflated: a package may unpack to at most ``max_expansion``
times its own size (a gzip bomb inflates about a thousandfold; models compress a little), beyond a
grace for small packages, and never past ``max_total_bytes``; while the data is copied a running
count holds it to what the header declared. Extended headers (PAX, GNU long names) over 1 MiB, or
more than a few in a row, are refused before tarfile reads them into memory; global PAX and sparse
headers, negative sizes and names over 4096 characters are refused; and the whole decompressed
stream, headers included, is capped by the same limits.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
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
    """The most a package may unpack to; checked member by member, from each member's header before
    its data is inflated, while the archive is read.

    A package may unpack to ``max_expansion`` times the size of its file, or to
    ``expansion_grace_bytes`` whichever is more (tiny packages of text compress well), and never to
    more than ``max_total_bytes``.
    """

    max_members: int = 100_000
    max_total_bytes: int = 64 << 30  # 64 GiB: large models are fine, a gzip bomb is not
    # Weights compress to 80-95 % of their size and code or vocabularies to a fifth; only a file of
    # (nearly) nothing but zeros gets past a hundredfold, and gzip's ceiling is about a thousandfold.
    max_expansion: int = 100
    expansion_grace_bytes: int = 64 << 20

    def expansion(self, package_bytes: int) -> int:
        """``max_expansion`` times ``package_bytes``, and at least ``expansion_grace_bytes``."""
        return max(self.expansion_grace_bytes, self.max_expansion * package_bytes)

    def budget(self, package_bytes: int) -> int:
        """The most the members of a package file of ``package_bytes`` bytes may unpack to."""
        return min(self.max_total_bytes, self.expansion(package_bytes))


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
    # mkstemp made it 0600; a package is meant to be shared (e.g. read by a container's non-root user).
    Path(raw.name).chmod(0o666 & ~_umask())
    Path(raw.name).replace(out)
    return out


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


# -- reading -----------------------------------------------------------------------------------


# Extended headers (PAX records, GNU long names) are read whole into memory by tarfile before we
# see the member they describe, so their size is checked on the raw header, before that read.
_MAX_EXTENDED_HEADER = 1 << 20
_MAX_EXTENDED_CHAIN = 4  # extended headers in a row before one member (each nests a call in tarfile)
_MAX_NAME = 4096
# Decompressed bytes allowed on top of the members' own sizes: headers and padding.
_OVERHEAD_PER_MEMBER = 4 << 10
_OVERHEAD_FIXED = 8 << 20


class _SafeTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized or unusual extended headers before tarfile reads them."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        kind = self.type
        if self.size < 0:  # base-256 sizes can be negative; they would undercount the size limit
            raise PackageInvalid(f"member {self.name!r} has a negative size: refused", field=self.name)
        if kind in (tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_SPARSE):
            raise PackageInvalid(
                f"member {self.name!r} uses an unsupported tar header type {kind!r}: refused", field=self.name
            )
        if kind not in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            return super()._proc_member(tar)  # type: ignore[misc,no-any-return]
        if self.size > _MAX_EXTENDED_HEADER:
            raise PackageInvalid(
                f"an extended tar header of {self.size} bytes is over the {_MAX_EXTENDED_HEADER}-byte limit:"
                " refused",
                field=self.name,
            )
        depth = getattr(tar, "_modelyard_depth", 0) + 1
        if depth > _MAX_EXTENDED_CHAIN:
            raise PackageInvalid(
                f"more than {_MAX_EXTENDED_CHAIN} extended tar headers in a row: refused", field=self.name
            )
        tar._modelyard_depth = depth  # type: ignore[attr-defined]
        try:
            return super()._proc_member(tar)  # type: ignore[misc,no-any-return]
        finally:
            tar._modelyard_depth = depth - 1  # type: ignore[attr-defined]


class _CappedReader(io.RawIOBase):
    """The decompressed stream, refusing to yield more than ``cap`` bytes in all (headers included)."""

    def __init__(self, source: gzip.GzipFile, cap: int, path: Path) -> None:
        super().__init__()
        self._source, self._cap, self._path = source, cap, path
        self.total = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > _CHUNK:
            size = _CHUNK
        data = self._source.read(size)
        self.total += len(data)
        if self.total > self._cap:
            raise PackageInvalid(
                f"{self._path} unpacks to more than {self._cap} bytes (headers included)",
                field=str(self._path),
            )
        return data


@dataclass(frozen=True)
class _Budget:
    """What one package file may unpack to: its members' bytes (``members``), and the whole
    decompressed stream with headers and padding (``stream``)."""

    members: int
    stream: int
    package_bytes: int

    @classmethod
    def of(cls, package_bytes: int, limits: Limits) -> _Budget:
        headers = (limits.max_members + 1) * _OVERHEAD_PER_MEMBER + _OVERHEAD_FIXED
        stream = min(limits.max_total_bytes + headers, limits.expansion(package_bytes) + _OVERHEAD_FIXED)
        return cls(limits.budget(package_bytes), stream, package_bytes)


@contextlib.contextmanager
def _opened(path: Path, limits: Limits) -> Iterator[tuple[tarfile.TarFile, _Budget]]:
    """The package as a streamed tar, read through a gzip reader capped at the limits."""
    if not path.is_file():
        raise PackageInvalid(f"package not found: {path}", field=str(path))
    with path.open("rb") as raw, gzip.GzipFile(filename="", mode="rb", fileobj=raw) as gz:
        budget = _Budget.of(os.fstat(raw.fileno()).st_size, limits)
        try:
            reader = _CappedReader(gz, budget.stream, path)
            tar = tarfile.open(fileobj=reader, mode="r|", tarinfo=_SafeTarInfo)  # noqa: SIM115 (with tar below)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PackageInvalid(
                f"{path} is not a modelyard package (gzip'd tar): {exc}", field=str(path)
            ) from None
        with tar:
            yield tar, budget


def _members(tar: tarfile.TarFile, path: Path, limits: Limits, budget: _Budget) -> Iterator[tarfile.TarInfo]:
    """Every member after checking it is safe, counting its declared size toward the budget before
    its data is read."""
    seen: set[str] = set()
    total = 0
    try:
        for count, info in enumerate(tar, start=1):
            if count > limits.max_members:
                raise PackageInvalid(f"{path} has more than {limits.max_members} members", field=info.name)
            if len(info.name) > _MAX_NAME:
                raise PackageInvalid(
                    f"{path} has a member name over {_MAX_NAME} characters", field=info.name[:200]
                )
            _check_member(info, seen)
            total += info.size
            if total > budget.members:
                raise _over_budget(path, info, limits, budget)
            yield info
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise PackageInvalid(f"{path} is corrupt: {exc}", field=str(path)) from None


def _over_budget(path: Path, info: tarfile.TarInfo, limits: Limits, budget: _Budget) -> PackageInvalid:
    return PackageInvalid(
        f"{path} unpacks to more than {budget.members} bytes: member {info.name!r} declares "
        f"{info.size} (a package may unpack to {limits.max_expansion}x its own {budget.package_bytes} "
        f"bytes, at least {limits.expansion_grace_bytes}, at most {limits.max_total_bytes}); "
        "refused before inflating it",
        field=info.name,
    )


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
    limits = limits or Limits()
    with _opened(path, limits) as (tar, budget):
        for info in _members(tar, path, limits, budget):
            return _read_manifest_member(tar, info)
    raise PackageInvalid(f"{path} is empty: no {MANIFEST_NAME}", field=MANIFEST_NAME)


def _copy_hashing(source: IO[bytes], sink: IO[bytes] | None, declared: int, name: str) -> str:
    """Hash (and with ``sink``, write) a member's data, never more than the ``declared`` size."""
    digest = hashlib.sha256()
    copied = 0
    while chunk := source.read(min(_CHUNK, declared - copied + 1)):
        copied += len(chunk)
        if copied > declared:  # tarfile stops at the header's size; this count makes sure of it
            raise PackageInvalid(f"member {name!r} inflates past its declared {declared} bytes", field=name)
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
    with _opened(path, limits) as (tar, budget), _corruption_is_invalid(path):
        for info in _members(tar, path, limits, budget):
            if manifest is None:
                manifest = _read_manifest_member(tar, info)
                continue
            rel = info.name.removeprefix(f"{FILES_DIR}/")
            if rel not in manifest.files:  # refuse before writing a byte of it
                raise PackageInvalid(f"{rel!r} is in the package but not in its manifest", field=rel)
            handle = tar.extractfile(info)
            assert handle is not None
            if write is None:
                found[rel] = _copy_hashing(handle, None, info.size, info.name)
            else:
                with write(rel) as sink:
                    found[rel] = _copy_hashing(handle, sink, info.size, info.name)
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

        try:
            manifest = _walk(path, limits or Limits(), write)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            # Two paths that the file system sees as one (a file that is also a folder, or names
            # equal but for case): a bad package, not "someone else unpacked it first".
            raise PackageInvalid(
                f"{path} has files that clash when unpacked: {exc}", field=str(path)
            ) from None
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
