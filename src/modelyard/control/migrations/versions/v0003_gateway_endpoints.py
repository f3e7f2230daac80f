"""Endpoint discovery: replicas that announce themselves with heartbeats.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_endpoints",
        *(sa.Column(name, sa.String(63), primary_key=True) for name in ("project", "model", "version")),
        sa.Column("url", sa.String(255), primary_key=True),
        sa.Column("ready", sa.Boolean, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gateway_endpoints_expires_at", "gateway_endpoints", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_endpoints_expires_at", table_name="gateway_endpoints")
    op.drop_table("gateway_endpoints")
