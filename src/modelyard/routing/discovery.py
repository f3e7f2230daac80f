"""Replica discovery: replicas announce themselves (an :class:`Announcement` each); the gateway finds them.

A replica (``modelyard serve --announce mail/spam/v1``) calls :meth:`RouteStore.heartbeat` every
few seconds. The first heartbeat, and any change of readiness, bumps the routing table's revision
so gateways reload at once; a plain heartbeat only moves the row's ``expires_at``. A replica that
stops heart-beating is removed by :meth:`RouteStore.expire`, which every gateway worker runs on
each poll (one indexed read; a write only when something did expire), so it leaves the routing
table within its time-to-live plus one poll.

These functions work on a connection inside the store's transactions (``store.py``).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from modelyard.control.db import as_utc
from modelyard.routing import schema as s

__all__ = ["Announcement", "all_endpoints", "expired", "live_urls", "remove", "remove_expired", "upsert"]


@dataclasses.dataclass(frozen=True, slots=True)
class Announcement:
    """One announced replica as the control plane last heard of it."""

    project: str
    model: str
    version: str
    url: str
    ready: bool
    heartbeat_at: datetime
    expires_at: datetime


def _key(project: str, model: str, version: str, url: str) -> ColumnElement[bool]:
    c = s.endpoints.c
    return and_(c.project == project, c.model == model, c.version == version, c.url == url)


def upsert(
    conn: Connection,
    project: str,
    model: str,
    version: str,
    url: str,
    ready: bool,
    now: datetime,
    ttl_s: float,
) -> bool:
    """Record a heartbeat; True when the routing table changes (a new endpoint or new readiness)."""
    expires = now + timedelta(seconds=ttl_s)
    key = _key(project, model, version, url)
    found = conn.execute(select(s.endpoints.c.ready, s.endpoints.c.expires_at).where(key)).first()
    if found is None:
        conn.execute(
            insert(s.endpoints).values(
                project=project, model=model, version=version, url=url, ready=ready,
                heartbeat_at=now, expires_at=expires,
            )
        )  # fmt: skip
        return ready
    conn.execute(update(s.endpoints).where(key).values(ready=ready, heartbeat_at=now, expires_at=expires))
    was_live = bool(found.ready) and as_utc(found.expires_at) > now
    return was_live != ready


def remove(conn: Connection, project: str, model: str, version: str, url: str) -> bool:
    """Forget an endpoint; True when it was live (so the routing table changes)."""
    key = _key(project, model, version, url)
    found = conn.execute(select(s.endpoints.c.ready).where(key)).first()
    conn.execute(delete(s.endpoints).where(key))
    return found is not None and bool(found.ready)


def expired(conn: Connection, now: datetime) -> bool:
    """Whether any endpoint has outlived its heartbeat (a cheap indexed read)."""
    statement = select(s.endpoints.c.url).where(s.endpoints.c.expires_at <= now).limit(1)
    return conn.execute(statement).first() is not None


def remove_expired(conn: Connection, now: datetime) -> int:
    return conn.execute(delete(s.endpoints).where(s.endpoints.c.expires_at <= now)).rowcount


def live_urls(
    conn: Connection, now: datetime, only: tuple[str, str] | None = None
) -> list[tuple[str, str, str, str]]:
    """``(project, model, version, url)`` of every ready, unexpired endpoint."""
    c = s.endpoints.c
    statement = select(c.project, c.model, c.version, c.url).where(c.ready.is_(True), c.expires_at > now)
    if only is not None:
        statement = statement.where(c.project == only[0], c.model == only[1])
    return [(row.project, row.model, row.version, row.url) for row in conn.execute(statement)]


def all_endpoints(conn: Connection) -> list[Announcement]:
    rows = conn.execute(
        select(s.endpoints).order_by(
            s.endpoints.c.project, s.endpoints.c.model, s.endpoints.c.version, s.endpoints.c.url
        )
    )
    return [
        Announcement(
            r.project, r.model, r.version, r.url, bool(r.ready), as_utc(r.heartbeat_at), as_utc(r.expires_at)
        )
        for r in rows
    ]
