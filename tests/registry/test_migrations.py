"""The shipped Alembic migrations build exactly the schema the code queries, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from modelyard.access import schema as access_schema
from modelyard.control.db import MIGRATIONS, create_engine_for, migrate
from modelyard.deploy import schema as deploy_schema
from modelyard.registry import ControlSettings, Registry
from modelyard.registry import schema as t
from modelyard.rollout import schema as rollout_schema
from modelyard.routing import schema as routing_schema
from modelyard.validation import job_schema


def test_migrated_database_matches_the_table_definitions(settings: ControlSettings) -> None:
    Registry(settings).close()  # opening migrates to head
    engine = create_engine_for(settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == "0009"
            # The metadata holds the gateway's routing table and the deploy history too (they share it).
            assert compare_metadata(context, t.metadata) == []
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {table.name for table in t.metadata.sorted_tables} <= tables
    assert routing_schema.metadata is t.metadata  # one metadata object
    assert deploy_schema.applies.metadata is t.metadata
    assert access_schema.tokens.metadata is t.metadata
    assert routing_schema.api_keys.metadata is t.metadata
    assert rollout_schema.rollouts.metadata is t.metadata
    assert job_schema.jobs.metadata is t.metadata
    assert {
        "gateway_routes",
        "gateway_versions",
        "gateway_replicas",
        "gateway_state",
        "gateway_endpoints",
        "deploy_applies",
        "access_tokens",
        "gateway_api_keys",
        "model_validations",
        "rollouts",
        "rollout_events",
        "rollout_lease",
        "validation_setups",
        "validation_jobs",
    } <= tables


def test_the_routing_table_migration_starts_at_revision_0(tmp_path: Path) -> None:
    # A fresh file: the PostgreSQL test database is migrated to head once per test process.
    engine = create_engine_for(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        migrate(engine, "0001")
        with engine.connect() as conn:
            assert "gateway_state" not in inspect(conn).get_table_names()
        migrate(engine)
        with engine.connect() as conn:
            state = conn.execute(select(routing_schema.state)).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in state] == [(1, 0)]


def test_the_migrations_live_inside_the_package() -> None:
    import modelyard.control

    package = Path(modelyard.control.__file__).parent
    assert package / "migrations" == MIGRATIONS
    assert (MIGRATIONS / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS / "versions").glob("v*.py")) == [
        "v0001_initial.py",
        "v0002_gateway_routes.py",
        "v0003_gateway_endpoints.py",
        "v0004_deploy_history.py",
        "v0005_access_tokens.py",
        "v0006_gateway_api_keys.py",
        "v0007_validations.py",
        "v0008_rollouts.py",
        "v0009_validation_jobs.py",
    ]
