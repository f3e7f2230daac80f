"""The tables of validation with nobody in the loop (SQLAlchemy Core; ``v0009_validation_jobs.py``
creates them).

- ``validation_setups``: at most one per registered model: the dataset, the policy, the baseline
  alias, what triggers a run (a push, a move of one alias) and the alias a pass moves. ``watch_from``
  is the time from which pushes and alias moves count: the setup's creation, then moved forward
  by the poller so that its scan stays short (see :mod:`modelyard.validation.triggers`).
- ``validation_jobs``: one row per run, queued by a trigger or by hand, claimed by one control
  plane with a compare-and-set on ``status``, kept alive by its ``lease_until``. ``(source,
  source_id, source_at)`` is unique: the registry row (a version, an alias event) that caused the
  job, so that two pollers, or one that restarted, never queue the same trigger twice. The row's
  time is part of the key because SQLite may hand a deleted version's id to the next one.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelyard.control.db import metadata

__all__ = [
    "DONE",
    "ERROR",
    "FAILED",
    "INCONCLUSIVE",
    "PASSED",
    "QUEUED",
    "RUNNING",
    "SKIPPED",
    "STATUSES",
    "jobs",
    "setups",
]

QUEUED = "queued"
RUNNING = "running"
PASSED = "passed"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"
ERROR = "error"  # no verdict: the data, a model or the registry could not be read
SKIPPED = "skipped"  # the same version was already queued by another trigger
DONE = (PASSED, FAILED, INCONCLUSIVE, ERROR, SKIPPED)
STATUSES = (QUEUED, RUNNING, *DONE)

setups = Table(
    "validation_setups",
    metadata,
    Column(
        "model_id",
        Integer,
        ForeignKey("registered_models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("dataset", Text, nullable=False),
    Column("labels", String(200), nullable=True),
    Column("output", String(200), nullable=True),
    Column("policy", JSON, nullable=False),
    Column("baseline", String(63), nullable=False),
    Column("on_push", Boolean, nullable=False),
    Column("on_alias", String(63), nullable=True),
    Column("promote_to", String(63), nullable=True),
    Column("watch_from", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

jobs = Table(
    "validation_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("trigger", String(80), nullable=False),  # push, alias:staging, manual
    Column("source", String(16), nullable=False),  # push, alias, manual
    Column("source_id", Integer, nullable=True),  # model_versions.id or alias_events.id
    Column("source_at", DateTime(timezone=True), nullable=True),  # that row's time
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("runner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("validation_id", Integer, nullable=True),  # the verdict recorded on the version
    Column("promotion", Text, nullable=True),  # what became of promote_to; None: not asked
    Column("log", Text, nullable=False),
    UniqueConstraint("source", "source_id", "source_at", name="uq_validation_jobs_source"),
    Index("ix_validation_jobs_status", "status", "id"),
    Index("ix_validation_jobs_model", "model_id", "id"),
)
