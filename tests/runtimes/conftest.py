"""Shared by the runtime tests: serve one model file in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.server import Settings
from modelyard.server.app import build_app
from modelyard.server.settings import ModelConfig


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(path, **model_config)`` -> a TestClient with that one file loaded."""
    clients: list[TestClient] = []

    def start(path: Path, **config: Any) -> TestClient:
        client = TestClient(build_app(Settings(models=[ModelConfig(path=str(path), **config)])))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
