"""The registry's tables (SQLAlchemy Core). The migrations in ``control/migrations/versions``
create them.

Concurrency rests on constraints, not on reads: ``uq_versions_model_version`` picks one winner among
clients registering the same version, the alias primary key and its ``revision`` column make alias
moves compare-and-set, and the RESTRICT foreign key from ``version_usages`` makes deleting a version
that a deployment has just started to use fail instead of orphaning the usage.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelyard.control.db import metadata

__all__ = ["alias_events", "aliases", "metadata", "models", "validations", "version_usages", "versions"]

models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="RESTRICT"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("filename", String(255), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("user", String(200), nullable=False, default=""),
    Column("source_run", String(500), nullable=False, default=""),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("manifest", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Also the index behind keyset pages of a model's versions and "latest version" lookups.
    UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
    Index("ix_versions_sha256", "sha256"),
)

aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, primary_key=True),
    Column("alias", String(63), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False, default=""),
    ForeignKeyConstraint(
        ["model_id", "version"],
        ["model_versions.model_id", "model_versions.version"],
        name="fk_aliases_version",
        ondelete="RESTRICT",
    ),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id", ondelete="RESTRICT"), nullable=False),
    Column("alias", String(63), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("user", String(200), nullable=False, default=""),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_alias_events_model_id", "model_id", "id"),
)

version_usages = Table(
    "version_usages",
    metadata,
    Column(
        "version_id",
        Integer,
        ForeignKey("model_versions.id", ondelete="RESTRICT"),
        primary_key=True,
    ),
    Column("consumer", String(200), primary_key=True),
    Column("since", DateTime(timezone=True), nullable=False),
)

# Verdicts of `modelyard validate` on a version (newest last); they go when the version goes.
validations = Table(
    "model_validations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("baseline", String(500), nullable=False),
    Column("baseline_sha256", String(64), nullable=True),
    Column("dataset", String(500), nullable=False),
    Column("dataset_sha256", String(64), nullable=True),
    Column("rows", BigInteger, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("gates", JSON, nullable=False),
    Column("figures", JSON, nullable=False),
    Column("user", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_model_validations_version_id", "version_id", "id"),
)
