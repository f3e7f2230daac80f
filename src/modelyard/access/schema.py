"""The access-token table (SQLAlchemy Core); ``control/migrations/versions/v0005_access_tokens.py``
creates it."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table

from modelyard.control.db import metadata

__all__ = ["tokens"]

tokens = Table(
    "access_tokens",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("name", String(63), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_access_tokens_name", "name"),
)
