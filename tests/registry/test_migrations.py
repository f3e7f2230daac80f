"""The shipped Alembic migrations build exactly the schema the code queries, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from modelyard.registry import Registry, RegistrySettings
from modelyard.registry import schema as t
from modelyard.registry.db import MIGRATIONS, create_registry_engine


def test_migrated_database_matches_the_table_definitions(settings: RegistrySettings) -> None:
    Registry(settings).close()  # opening migrates to head
    engine = create_registry_engine(settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == "0001"
            assert compare_metadata(context, t.metadata) == []
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {table.name for table in t.metadata.sorted_tables} <= tables


def test_the_migrations_live_inside_the_package() -> None:
    import modelyard.registry

    package = Path(modelyard.registry.__file__).parent
    assert package / "migrations" == MIGRATIONS
    assert (MIGRATIONS / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS / "versions").glob("v*.py")) == ["v0001_initial.py"]
