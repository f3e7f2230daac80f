from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from modelyard.app import build_app
from modelyard.server import Settings
from tests import models


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The server with the tiny test models, in-process (lifespan runs: models load and warm up)."""
    app = build_app(Settings(), [models.Doubler, models.Picky, models.Lister, models.Slow, models.AsyncEcho])
    with TestClient(app) as test_client:
        yield test_client
