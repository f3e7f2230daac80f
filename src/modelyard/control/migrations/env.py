"""Alembic's entry point: migrate the connection that :func:`modelyard.control.db.migrate` passes in.

Importing this module as part of the package does nothing; only Alembic (which loads the file by
path under another module name) runs the migrations.
"""

from __future__ import annotations

from alembic import context

# An arbitrary constant: every process migrating the same PostgreSQL database takes this lock first,
# so two servers starting together cannot both try to create the tables.
_PG_LOCK_ID = 7_342_001


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if __name__ != "modelyard.control.migrations.env":
    run_migrations_online()
