"""Gateway API keys: one row per per-project inference key, holding its hash, never the key.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_api_keys",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("rate_per_s", sa.Float, nullable=True),
        sa.Column("burst", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_gateway_api_keys_project", "gateway_api_keys", ["project"])
    op.create_index("ux_gateway_api_keys_key_hash", "gateway_api_keys", ["key_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_gateway_api_keys_key_hash", table_name="gateway_api_keys")
    op.drop_index("ix_gateway_api_keys_project", table_name="gateway_api_keys")
    op.drop_table("gateway_api_keys")
