"""Gateway test fixtures: a world of real stub replicas, a SQLite routing store and gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.support import GatewayWorld, Raw, world


@pytest.fixture
def env(tmp_path: Path) -> Iterator[GatewayWorld]:
    with world(tmp_path) as created:
        yield created


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as opened:
        yield opened


@pytest.fixture
def connect() -> Iterator[Callable[[str], Raw]]:
    """Raw sockets to a gateway (``Raw(url)``), closed after the test."""
    opened: list[Raw] = []

    def _connect(url: str) -> Raw:
        opened.append(Raw(url))
        return opened[-1]

    yield _connect
    for raw in opened:
        raw.close()
