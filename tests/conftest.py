"""Shared fixtures. Storage-level tests (registry, gateway routing table) run on SQLite and on the
real PostgreSQL through ``database_settings``.

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust auth). Each pytest process (each
xdist worker) creates its own uniquely named database and drops it at the end, so parallel
workers never share tables; between tests the tables are emptied. When the server cannot be
reached the PostgreSQL half is skipped, except with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

import modelyard.deploy.schema  # (adds the deploy history to the metadata emptied below)
import modelyard.routing.schema  # noqa: F401  (adds the routing table's tables to the metadata emptied below)
from modelyard.control.settings import ControlSettings
from modelyard.registry import schema as registry_schema
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models

SRC = Path(__file__).resolve().parents[1] / "src"


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a compiled module (scripts/compile) that is older than its source: Python
    would import the stale extension and the tests would not test the code on disk."""
    stale = [
        compiled.name
        for compiled in SRC.glob("modelyard/**/*.so")
        if (source := compiled.with_name(compiled.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > compiled.stat().st_mtime
    ]
    if stale:
        raise pytest.UsageError(
            f"compiled modules older than their sources: {', '.join(sorted(stale))}; "
            "run scripts/compile (or scripts/compile --clean to run interpreted)"
        )


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
DATABASE_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The server with the tiny test models, in-process (lifespan runs: models load and warm up)."""
    app = build_app(Settings(), [models.Doubler, models.Picky, models.Lister, models.Slow, models.AsyncEcho])
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test process, dropped afterwards."""
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required with CI=true but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"modelyard_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty_postgres(url: str) -> None:
    """Empty every table of the shared metadata: the registry's, the gateway's routing table and the
    deploy history."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            exists = conn.execute(text("SELECT to_regclass('registered_models')")).scalar()
            if exists is not None:
                tables = ", ".join(table.name for table in registry_schema.metadata.sorted_tables)
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=DATABASE_BACKENDS)
def database_settings(request: pytest.FixtureRequest, tmp_path: Path) -> ControlSettings:
    """Settings for an empty control-plane database on SQLite (a file under tmp_path) or PostgreSQL."""
    base = ControlSettings(home=tmp_path / "home", artifact_url=str(tmp_path / "artifacts"))
    if request.param == "sqlite":
        return base
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return base.model_copy(update={"database_url": url})


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI run on the local database under ``tmp_path/home``: no control plane
    named, none inherited from the environment the tests run in."""
    return {
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_REGISTRY_DB": "",
        "MODELYARD_TOKEN": "",
        "MODELYARD_CONTROL_URL": "",
        "MODELYARD_REGISTRY_URL": "",
        "COLUMNS": "200",
    }
