"""The deploy history in the control-plane database (SQLAlchemy Core).

``deploy_applies`` joins the control plane's ``metadata`` (``control/db.py``): one database, one
Alembic history (``control/migrations/versions/v0004_deploy_history.py`` creates it), and whatever
empties or inspects the registry's tables sees this one too.

Every apply is one row: who started it, from what (a file path, "rollback to #3"), the deploy file's
whole text, what it did (``plan``) and how it ended. The newest ``applied`` row is the desired state
the next diff starts from. ``uq_deploy_applies_running`` is a partial unique index over the rows
whose status is ``running``: at most one such row can exist, so the database itself decides which of
two concurrent applies may start (SQLite and PostgreSQL both support partial indexes).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, Text

from modelyard.control.db import metadata

__all__ = ["APPLIED", "FAILED", "RUNNING", "SOURCE_LENGTH", "STATUSES", "USER_LENGTH", "applies"]

RUNNING = "running"
APPLIED = "applied"
FAILED = "failed"
STATUSES = (RUNNING, APPLIED, FAILED)
USER_LENGTH = 200  # as the registry's ``user`` columns
SOURCE_LENGTH = 500

applies = Table(
    "deploy_applies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("user", String(USER_LENGTH), nullable=False),
    Column("source", String(SOURCE_LENGTH), nullable=False),
    Column("file_text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# One running apply at a time, enforced by the database (see the module docstring).
Index(
    "uq_deploy_applies_running",
    applies.c.status,
    unique=True,
    sqlite_where=applies.c.status == RUNNING,
    postgresql_where=applies.c.status == RUNNING,
)
