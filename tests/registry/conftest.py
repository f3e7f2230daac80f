"""Registry fixtures: every storage-level test runs on SQLite and on the real PostgreSQL.

The databases come from ``database_settings`` in tests/conftest.py, shared with the gateway's
routing-table tests (one PostgreSQL database per test process, emptied between tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry import ControlSettings, Registry


@pytest.fixture
def settings(database_settings: ControlSettings) -> ControlSettings:
    """Settings for an empty registry on SQLite (a file under tmp_path) or PostgreSQL."""
    return database_settings


@pytest.fixture
def registry(settings: ControlSettings) -> Iterator[Registry]:
    with Registry(settings) as opened:
        yield opened


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[Registry]:
    """For tests of the layers above storage (REST, client, CLI): SQLite only."""
    with Registry(ControlSettings(home=tmp_path / "home")) as opened:
        yield opened


def artifact_files(root: Path) -> list[Path]:
    """Every file in an artifact folder (temporary uploads included)."""
    return sorted(path for path in root.rglob("*") if path.is_file())
