"""Artifact storage: content-addressed bytes behind a five-method Protocol (put, open, stat, delete, list).

An upload streams into a temporary object while it is hashed, and only a complete, verified upload
is moved to ``<root>/sha256/<ab>/<digest>``. Any failure on the way (the client went away, the body
was too large or shorter than announced, the digest did not match) deletes the temporary object, so
nothing half-written is ever addressable. The same bytes pushed twice are stored once (and the
copy's modification time is refreshed where the filesystem allows, so garbage collection sees it as new).

``list`` exists for garbage collection only: the registry has to see every stored blob, with its
size and age, to find the ones no version references (see :meth:`Registry.collect_garbage`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Protocol, runtime_checkable

import fsspec  # type: ignore[import-untyped]  # fsspec ships no type information

from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.registry.types import ListedArtifact, StoredArtifact

__all__ = ["ArtifactStore", "FsspecArtifactStore", "check_digest"]

_DIGEST = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would take a trailing newline


def check_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidInput(f"invalid SHA-256 digest {digest!r}: 64 lower-case hex digits", field="sha256")
    return digest


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifact bytes live, addressed by SHA-256."""

    def put(
        self,
        chunks: Iterable[bytes],
        *,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> StoredArtifact:
        """Store a stream; raises (and stores nothing) if it fails or does not match what was expected."""
        ...

    def open(self, digest: str) -> IO[bytes]:
        """The stored bytes for reading; :class:`NotFound` if there are none."""
        ...

    def stat(self, digest: str) -> StoredArtifact | None:
        """What is stored under ``digest`` (size, URI), or None: the store's ``exists``."""
        ...

    def delete(self, digest: str) -> None:
        """Remove the bytes; deleting what is not there is not an error."""
        ...

    def list(self) -> Iterator[ListedArtifact]:
        """Every stored blob with its size and modification time (temporary uploads excluded)."""
        ...


class FsspecArtifactStore:
    """An :class:`ArtifactStore` on any fsspec URL: a local folder, ``memory://``, ``s3://``, ..."""

    def __init__(self, url: str) -> None:
        self._fs, root = fsspec.core.url_to_fs(url)
        self._root = root.rstrip("/")

    def path(self, digest: str) -> str:
        return f"{self._root}/sha256/{digest[:2]}/{digest}"

    def put(
        self,
        chunks: Iterable[bytes],
        *,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> StoredArtifact:
        temporary = f"{self._root}/tmp/{uuid.uuid4().hex}"
        self._fs.makedirs(f"{self._root}/tmp", exist_ok=True)
        try:
            digest, size = self._write(temporary, chunks, max_size)
            _verify(digest, size, expected_size, expected_sha256)
            final = self.path(digest)
            if self._fs.exists(final):  # the same bytes are here already: keep one copy
                self._fs.rm(temporary)
                self._refresh(final)
            else:
                self._fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self._fs.mv(temporary, final)
        except BaseException:
            self._discard(temporary)
            raise
        return StoredArtifact(sha256=digest, size=size, uri=self._fs.unstrip_protocol(final))

    def _write(self, temporary: str, chunks: Iterable[bytes], max_size: int | None) -> tuple[str, int]:
        hasher = hashlib.sha256()
        size = 0
        with self._fs.open(temporary, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(size, max_size)
                hasher.update(chunk)
                out.write(chunk)
        return hasher.hexdigest(), size

    def _refresh(self, path: str) -> None:
        """Mark a re-uploaded blob as new, so garbage collection leaves it to its imminent registration."""
        with contextlib.suppress(NotImplementedError, OSError):  # memory:// cannot; best effort
            self._fs.touch(path, truncate=False)

    def _discard(self, temporary: str) -> None:
        try:
            if self._fs.exists(temporary):
                self._fs.rm(temporary)
        except OSError:
            pass  # best effort: the original error is the one worth raising

    def open(self, digest: str) -> IO[bytes]:
        path = self.path(check_digest(digest))
        try:
            handle: IO[bytes] = self._fs.open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"artifact {digest} is not in the store", field="sha256") from None
        return handle

    def stat(self, digest: str) -> StoredArtifact | None:
        path = self.path(check_digest(digest))
        try:
            size = int(self._fs.size(path))
        except FileNotFoundError:
            return None
        return StoredArtifact(sha256=digest, size=size, uri=self._fs.unstrip_protocol(path))

    def delete(self, digest: str) -> None:
        path = self.path(check_digest(digest))
        if self._fs.exists(path):
            self._fs.rm(path)

    def list(self) -> Iterator[ListedArtifact]:
        try:
            found = self._fs.find(f"{self._root}/sha256", detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            digest = str(path).rsplit("/", 1)[-1]
            if info.get("type", "file") != "file" or not _DIGEST.fullmatch(digest):
                continue
            yield ListedArtifact(
                sha256=digest,
                size=int(info.get("size") or 0),
                uri=self._fs.unstrip_protocol(path),
                modified_at=self._modified(path, info),
            )

    def _modified(self, path: str, info: dict[str, object]) -> datetime:
        """The blob's modification time from fsspec's info (local: mtime, memory: created, S3: ...)."""
        for key in ("mtime", "LastModified", "last_modified", "modified", "created"):
            value = info.get(key)
            if isinstance(value, int | float):
                return datetime.fromtimestamp(value, UTC)
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=UTC)
        modified: datetime = self._fs.modified(path)
        return modified if modified.tzinfo else modified.replace(tzinfo=UTC)


def _verify(digest: str, size: int, expected_size: int | None, expected_sha256: str | None) -> None:
    if expected_size is not None and size != expected_size:
        raise InvalidInput(
            f"upload was cut off or padded: received {size} bytes, expected {expected_size}", field="body"
        )
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise InvalidInput(
            f"upload's SHA-256 is {digest}, expected {expected_sha256}", field="x-content-sha256"
        )
