"""The gateway's routing table: routes, their versions and replicas, and the table's revision.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_NAME = 63


def _key(*names: str) -> list[sa.Column[object]]:
    return [sa.Column(name, sa.String(_NAME), primary_key=True) for name in names]


def upgrade() -> None:
    op.create_table(
        "gateway_routes",
        *_key("project", "model"),
        sa.Column("timeout_s", sa.Float, nullable=False),
        sa.Column("log_payload", sa.String(8), nullable=False),
        sa.Column("log_sample", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "gateway_versions",
        *_key("project", "model", "version"),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("mirror", sa.Boolean, nullable=False),
        sa.Column("mirror_fraction", sa.Float, nullable=False),
        sa.Column("target", sa.String(_NAME), nullable=False),
        sa.ForeignKeyConstraint(
            ["project", "model"],
            ["gateway_routes.project", "gateway_routes.model"],
            name="fk_gateway_versions_route",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "gateway_replicas",
        *_key("project", "model", "version"),
        sa.Column("url", sa.String(255), primary_key=True),
        sa.ForeignKeyConstraint(
            ["project", "model", "version"],
            ["gateway_versions.project", "gateway_versions.model", "gateway_versions.version"],
            name="fk_gateway_replicas_version",
            ondelete="CASCADE",
        ),
    )
    state = op.create_table(
        "gateway_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(state, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    for table in ("gateway_state", "gateway_replicas", "gateway_versions", "gateway_routes"):
        op.drop_table(table)
