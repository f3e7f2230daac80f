"""A download is held to the size the registry recorded: a store or server that sends more is cut off
at once, and nothing of it stays in the cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry.files import download_verified
from modelyard.registry.types import ModelVersion


def test_a_download_longer_than_recorded_is_refused_at_once(tmp_path: Path) -> None:
    version = ModelVersion(
        name="m", version=1, artifact_uri="memory://x", sha256="0" * 64, size=10,
        filename="m.modelyard", created_at=datetime.now(UTC),
    )  # fmt: skip
    sent = 0

    def flood() -> Iterator[bytes]:  # 64 MiB where 10 bytes were recorded
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield bytes(1 << 20)

    cache = tmp_path / "cache"
    with pytest.raises(InvalidInput, match="longer than its 10 bytes"):
        download_verified(version, cache, flood)
    assert sent == 1
    assert list(cache.iterdir()) == []
