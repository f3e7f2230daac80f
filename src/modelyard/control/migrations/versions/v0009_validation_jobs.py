"""Validation with nobody in the loop: a model's validation setup, and the jobs that run it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "validation_setups",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("registered_models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("labels", sa.String(200), nullable=True),
        sa.Column("output", sa.String(200), nullable=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("baseline", sa.String(63), nullable=False),
        sa.Column("on_push", sa.Boolean, nullable=False),
        sa.Column("on_alias", sa.String(63), nullable=True),
        sa.Column("promote_to", sa.String(63), nullable=True),
        sa.Column("watch_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "validation_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("registered_models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(80), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_id", sa.Integer, nullable=True),
        sa.Column("source_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("validation_id", sa.Integer, nullable=True),
        sa.Column("promotion", sa.Text, nullable=True),
        sa.Column("log", sa.Text, nullable=False),
        sa.UniqueConstraint("source", "source_id", "source_at", name="uq_validation_jobs_source"),
    )
    op.create_index("ix_validation_jobs_status", "validation_jobs", ["status", "id"])
    op.create_index("ix_validation_jobs_model", "validation_jobs", ["model_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_validation_jobs_model", table_name="validation_jobs")
    op.drop_index("ix_validation_jobs_status", table_name="validation_jobs")
    op.drop_table("validation_jobs")
    op.drop_table("validation_setups")
