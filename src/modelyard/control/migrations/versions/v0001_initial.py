"""The registry's first schema: models, versions, aliases with history, version usages.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _created(name: str = "created_at") -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    _models_and_versions()
    _aliases_and_usages()


def _models_and_versions() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        _created(),
        _created("updated_at"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("registered_models.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("source_run", sa.String(500), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("manifest", sa.JSON, nullable=True),
        _created(),
        sa.UniqueConstraint("model_id", "version", name="uq_versions_model_version"),
    )
    op.create_index("ix_versions_sha256", "model_versions", ["sha256"])


def _aliases_and_usages() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.Integer, primary_key=True),
        sa.Column("alias", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        _created("updated_at"),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_aliases_version",
            ondelete="RESTRICT",
        ),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("registered_models.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("alias", sa.String(63), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("user", sa.String(200), nullable=False),
        _created("at"),
    )
    op.create_index("ix_alias_events_model_id", "alias_events", ["model_id", "id"])
    op.create_table(
        "version_usages",
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column("consumer", sa.String(200), primary_key=True),
        _created("since"),
    )


def downgrade() -> None:
    for table in ("version_usages", "alias_events", "model_aliases", "model_versions", "registered_models"):
        op.drop_table(table)
