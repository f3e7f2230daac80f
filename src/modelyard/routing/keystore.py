"""The API-key rows of the routing table (``gateway_api_keys``): insert, list, revoke, forget,
and what a table load hands the gateways (the active keys' grants, the keyed projects).

Functions on an open connection, like ``discovery.py``'s: :class:`~modelyard.routing.store.RouteStore`
calls them inside its write transactions, which bump the table's revision first, so a new or
revoked key reaches every gateway with its next poll.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from modelyard.control.db import as_utc
from modelyard.errors import Conflict, NotFound
from modelyard.routing import schema as s
from modelyard.routing.keys import ApiKey, hash_key, new_key
from modelyard.routing.table import KeyGrant

__all__ = ["create", "forget", "grants", "keyed", "listed", "revoke"]

_KEYS = s.api_keys


def _record(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        project=row.project,
        name=row.name,
        rate_per_s=None if row.rate_per_s is None else float(row.rate_per_s),
        burst=int(row.burst),
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
    )


def create(
    conn: Connection,
    project: str,
    name: str,
    rate_per_s: float | None,
    burst: int,
    created_by: str,
    now: datetime,
) -> tuple[ApiKey, str]:
    """A new key of ``project`` (all checked already): its record and the key itself, which is
    stored nowhere. A name is unique among a project's active keys."""
    active = (_KEYS.c.project == project) & (_KEYS.c.name == name) & _KEYS.c.revoked_at.is_(None)
    if conn.execute(select(_KEYS.c.id).where(active)).first() is not None:
        raise Conflict(f"project '{project}' has an active key named '{name}'; revoke it first", field="name")
    ident, key = new_key()
    conn.execute(
        insert(_KEYS).values(
            id=ident, project=project, name=name, key_hash=hash_key(key), rate_per_s=rate_per_s,
            burst=burst, created_at=now, created_by=created_by[:200],
        )
    )  # fmt: skip
    return _record(conn.execute(select(_KEYS).where(_KEYS.c.id == ident)).one()), key


def listed(conn: Connection, project: str | None, include_revoked: bool) -> list[ApiKey]:
    """Keys (of ``project``, or all), oldest first."""
    query = select(_KEYS).order_by(_KEYS.c.project, _KEYS.c.created_at, _KEYS.c.id)
    if project is not None:
        query = query.where(_KEYS.c.project == project)
    if not include_revoked:
        query = query.where(_KEYS.c.revoked_at.is_(None))
    return [_record(row) for row in conn.execute(query)]


def revoke(conn: Connection, ident: str, now: datetime) -> ApiKey:
    """Revoke the key ``ident`` and return its record; a key revoked before stays as it was."""
    found = conn.execute(select(_KEYS).where(_KEYS.c.id == ident)).first()
    if found is None:
        raise NotFound(f"no API key with id '{ident}'", field="id")
    if found.revoked_at is not None:
        return _record(found)
    conn.execute(update(_KEYS).where(_KEYS.c.id == ident).values(revoked_at=now))
    return _record(conn.execute(select(_KEYS).where(_KEYS.c.id == ident)).one())


def forget(conn: Connection, project: str) -> int:
    """Delete ``project``'s revoked keys, which opens it to requests without a key; Conflict while
    it has an active key. The number of keys forgotten."""
    mine = _KEYS.c.project == project
    active = conn.execute(select(func.count()).where(mine, _KEYS.c.revoked_at.is_(None))).scalar()
    if active:
        raise Conflict(
            f"project '{project}' has {active} active API key(s): revoke them first", field="project"
        )
    return int(conn.execute(delete(_KEYS).where(mine)).rowcount or 0)


def keyed(conn: Connection) -> frozenset[str]:
    """The projects with keys, revoked ones included: those that take requests only with a key."""
    return frozenset(conn.execute(select(_KEYS.c.project).distinct()).scalars())


def grants(conn: Connection) -> dict[str, KeyGrant]:
    """Every active key's grant, by the key's hash: what a table load gives the gateways."""
    columns = (_KEYS.c.key_hash, _KEYS.c.project, _KEYS.c.rate_per_s, _KEYS.c.burst)
    rows = conn.execute(select(*columns).where(_KEYS.c.revoked_at.is_(None)))
    return {
        row.key_hash: KeyGrant(
            row.project, None if row.rate_per_s is None else float(row.rate_per_s), int(row.burst)
        )
        for row in rows
    }
