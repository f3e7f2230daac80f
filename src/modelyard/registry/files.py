"""Downloading an artifact to a local file, verified against its SHA-256, reusing a verified copy."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from modelyard.errors import InvalidInput
from modelyard.registry.types import ModelVersion

__all__ = ["CHUNK", "download_verified", "file_chunks", "file_sha256", "safe_filename"]

CHUNK = 1024 * 1024


def file_chunks(handle: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in file_chunks(handle):
            hasher.update(chunk)
    return hasher.hexdigest()


def safe_filename(filename: str) -> str:
    """The last path component, so a stored file name can never write outside the target folder."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise InvalidInput(f"invalid artifact file name {filename!r}", field="filename")
    return name


def download_verified(
    version: ModelVersion, dest_dir: Path, open_chunks: Callable[[], Iterable[bytes]]
) -> Path:
    """``dest_dir/<filename>`` holding ``version``'s bytes; a copy already there is reused if it verifies.

    The download goes to a temporary file in ``dest_dir`` and is renamed into place only after its
    size and digest match, so a reader never sees a partial or corrupt artifact; one that runs past
    the recorded size is refused then and there, so a bad store or server cannot fill the disk.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / safe_filename(version.filename)
    if target.is_file() and target.stat().st_size == version.size and file_sha256(target) == version.sha256:
        return target
    temporary = dest_dir / f".{target.name}.{uuid.uuid4().hex}.part"
    try:
        hasher = hashlib.sha256()
        size = 0
        with temporary.open("wb") as out:
            for chunk in open_chunks():
                size += len(chunk)
                if size > version.size:  # a store or server sending more: stop, write nothing more
                    raise InvalidInput(
                        f"downloaded artifact of {version.ref} is longer than its {version.size} bytes",
                        field="size",
                    )
                hasher.update(chunk)
                out.write(chunk)
        if size != version.size or hasher.hexdigest() != version.sha256:
            raise InvalidInput(
                f"downloaded artifact of {version.ref} does not match its checksum "
                f"({size} bytes, sha256 {hasher.hexdigest()})",
                field="sha256",
            )
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
