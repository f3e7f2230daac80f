"""The gateway's routing table in the control-plane database (SQLAlchemy Core).

The tables join the control plane's ``metadata`` (``control/db.py``): one database, one Alembic
history (``control/migrations/versions/v0002_gateway_routes.py`` creates them), and whatever empties
or inspects the registry's tables sees these too.

``gateway_state`` holds a single row (``id = 1``) whose ``revision`` every write bumps in the same
transaction. Gateway workers poll that one primary-key lookup; and because every writer updates the
row first, its row lock (PostgreSQL) or the write lock (SQLite) also serialises writers.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
)

from modelyard.control.db import metadata

__all__ = [
    "NAME_LENGTH",
    "STATE_ID",
    "URL_LENGTH",
    "api_keys",
    "endpoints",
    "replicas",
    "routes",
    "state",
    "versions",
]

NAME_LENGTH = 63  # table.NAME_PATTERN: at most 63 characters
URL_LENGTH = 255
STATE_ID = 1  # the one row of gateway_state

routes = Table(
    "gateway_routes",
    metadata,
    Column("project", String(NAME_LENGTH), primary_key=True),
    Column("model", String(NAME_LENGTH), primary_key=True),
    Column("timeout_s", Float, nullable=False),
    Column("log_payload", String(8), nullable=False),
    Column("log_sample", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

versions = Table(
    "gateway_versions",
    metadata,
    Column("project", String(NAME_LENGTH), primary_key=True),
    Column("model", String(NAME_LENGTH), primary_key=True),
    Column("version", String(NAME_LENGTH), primary_key=True),
    Column("weight", Integer, nullable=False),
    Column("mirror", Boolean, nullable=False),
    Column("mirror_fraction", Float, nullable=False),
    Column("target", String(NAME_LENGTH), nullable=False),
    ForeignKeyConstraint(
        ["project", "model"],
        ["gateway_routes.project", "gateway_routes.model"],
        name="fk_gateway_versions_route",
        ondelete="CASCADE",
    ),
)

replicas = Table(
    "gateway_replicas",
    metadata,
    Column("project", String(NAME_LENGTH), primary_key=True),
    Column("model", String(NAME_LENGTH), primary_key=True),
    Column("version", String(NAME_LENGTH), primary_key=True),
    Column("url", String(URL_LENGTH), primary_key=True),
    ForeignKeyConstraint(
        ["project", "model", "version"],
        ["gateway_versions.project", "gateway_versions.model", "gateway_versions.version"],
        name="fk_gateway_replicas_version",
        ondelete="CASCADE",
    ),
)

state = Table(
    "gateway_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
)

# Replicas that announce themselves (endpoint discovery, seed R10): each heartbeat pushes
# ``expires_at`` forward; a ready, unexpired row counts as a replica of its version, next to the
# static ``gateway_replicas``. No foreign key: a replica may announce itself before its route exists.
endpoints = Table(
    "gateway_endpoints",
    metadata,
    Column("project", String(NAME_LENGTH), primary_key=True),
    Column("model", String(NAME_LENGTH), primary_key=True),
    Column("version", String(NAME_LENGTH), primary_key=True),
    Column("url", String(URL_LENGTH), primary_key=True),
    Column("ready", Boolean, nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_gateway_endpoints_expires_at", "expires_at"),
)

# Per-project API keys for inference (routing/keys.py; v0006_gateway_api_keys.py creates it). Only
# the SHA-256 of a key is stored; its writes bump gateway_state like every routing write, so the
# gateways load the active keys' hashes with the table they already poll.
api_keys = Table(
    "gateway_api_keys",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("project", String(NAME_LENGTH), nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("rate_per_s", Float, nullable=True),
    Column("burst", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_gateway_api_keys_project", "project"),
    Index("ux_gateway_api_keys_key_hash", "key_hash", unique=True),
)
