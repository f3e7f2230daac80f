"""Validation verdicts: one row per ``modelyard validate`` run recorded on a registry version.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "model_validations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "version_id",
            sa.Integer,
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("baseline", sa.String(500), nullable=False),
        sa.Column("baseline_sha256", sa.String(64), nullable=True),
        sa.Column("dataset", sa.String(500), nullable=False),
        sa.Column("dataset_sha256", sa.String(64), nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("gates", sa.JSON, nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_validations_version_id", "model_validations", ["version_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_validations_version_id", table_name="model_validations")
    op.drop_table("model_validations")
