"""Gateway test fixtures: a world of real stub replicas, a SQLite routing store and gateways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.support import GatewayWorld, world


@pytest.fixture
def env(tmp_path: Path) -> Iterator[GatewayWorld]:
    with world(tmp_path) as created:
        yield created


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as opened:
        yield opened
