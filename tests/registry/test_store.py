"""The fsspec artifact store: content addressing, deduplication, and uploads that fail leave nothing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.registry import ArtifactStore, FsspecArtifactStore


@pytest.fixture(params=["local", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "store")
        return
    url = f"memory://modelyard-test-{uuid.uuid4().hex}"
    yield url
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _files(url: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(url)
    return sorted(fs.find(root)) if fs.exists(root) else []


def test_put_is_content_addressed_and_deduplicated(store_url: str) -> None:
    store = FsspecArtifactStore(store_url)
    assert isinstance(store, ArtifactStore)
    data = b"model bytes " * 1000
    digest = hashlib.sha256(data).hexdigest()
    first = store.put([data[:5000], data[5000:]])
    second = store.put([data])
    assert first == second
    assert first.sha256 == digest
    assert first.size == len(data)
    assert first.uri.endswith(f"/sha256/{digest[:2]}/{digest}")
    assert [path.rsplit("/", 1)[-1] for path in _files(store_url)] == [digest]  # one copy, no temporaries
    with store.open(digest) as handle:
        assert handle.read() == data
    assert store.stat(digest) == first
    store.delete(digest)
    assert store.stat(digest) is None
    with pytest.raises(NotFound):
        store.open(digest)


def _cut_off(data: bytes) -> Iterator[bytes]:
    yield data
    raise ConnectionResetError("client went away")


def test_an_upload_cut_off_midway_leaves_nothing(store_url: str) -> None:
    store = FsspecArtifactStore(store_url)
    with pytest.raises(ConnectionResetError):
        store.put(_cut_off(b"x" * 10_000))
    assert _files(store_url) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"expected_size": 11}, InvalidInput),
        ({"expected_sha256": "0" * 64}, InvalidInput),
        ({"max_size": 4}, PayloadTooLarge),
    ],
)
def test_uploads_that_do_not_match_leave_nothing(
    store_url: str, kwargs: dict[str, object], error: type
) -> None:
    store = FsspecArtifactStore(store_url)
    with pytest.raises(error):
        store.put([b"0123456789"], **kwargs)  # type: ignore[arg-type]
    assert _files(store_url) == []
    stored = store.put([b"0123456789"], expected_size=10, max_size=10)  # the same bytes, as announced: fine
    assert stored.size == 10
