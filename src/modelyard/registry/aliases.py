"""Moving aliases with compare-and-set, and recording every move in ``alias_events``.

Each alias row has a ``revision`` that grows by one on every move. A caller that passes
``expected_revision`` (0 for "must not exist yet") gets exactly-one-winner semantics: the UPDATE is
``... WHERE revision = :expected`` and the INSERT relies on the primary key, so of two racing
clients one changes the row and the other matches nothing, or hits the key, and gets ``Conflict``.
This holds on SQLite and PostgreSQL alike because the database, not a prior read, decides.

Without ``expected_revision`` a move is unconditional (last writer wins) and must never fail for
losing a race: the current row is read ``FOR UPDATE`` (PostgreSQL; SQLite runs one writer at a
time anyway), so concurrent movers queue on the row and each move is applied and recorded in turn;
a racing creation of the same new alias falls back to moving the row the other client created.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from modelyard.errors import Conflict, NotFound
from modelyard.registry import schema as t

__all__ = ["move_alias", "record_event", "remove_alias"]


def _current(conn: Connection, model: int, alias: str) -> Row[Any] | None:
    """The alias row, locked until commit (waiting for a concurrent mover, then reading its result)."""
    return conn.execute(
        select(t.aliases)
        .where(and_(t.aliases.c.model_id == model, t.aliases.c.alias == alias))
        .with_for_update()
    ).first()


def _check_expected(current: Row[Any] | None, expected: int | None, alias: str) -> None:
    actual = 0 if current is None else int(current.revision)
    if expected is not None and expected != actual:
        raise Conflict(
            f"alias '{alias}' is at revision {actual}, not {expected}: another client moved it",
            field="expected_revision",
        )


def record_event(
    conn: Connection, model: int, alias: str, moved: tuple[int | None, int | None], user: str, at: datetime
) -> None:
    conn.execute(
        insert(t.alias_events).values(
            model_id=model, alias=alias, from_version=moved[0], to_version=moved[1], user=user, at=at
        )
    )


def move_alias(
    conn: Connection, model: int, alias: str, version: int, user: str, expected: int | None, now: datetime
) -> int:
    """Point ``alias`` at ``version``; returns the new revision. Raises Conflict if it lost a race."""
    current = _current(conn, model, alias)
    _check_expected(current, expected, alias)
    if current is None:
        values = {"model_id": model, "alias": alias, "version": version, "revision": 1}
        if expected is not None:
            # A concurrent creator makes this INSERT fail on the primary key: the caller maps it to Conflict.
            conn.execute(insert(t.aliases).values(**values, updated_at=now, updated_by=user))
            record_event(conn, model, alias, (None, version), user, now)
            return 1
        try:
            with conn.begin_nested():
                conn.execute(insert(t.aliases).values(**values, updated_at=now, updated_by=user))
        except IntegrityError:
            current = _current(conn, model, alias)  # created meanwhile: move that one instead
            if current is None:
                raise
        else:
            record_event(conn, model, alias, (None, version), user, now)
            return 1
    revision = int(current.revision)
    moved = conn.execute(
        update(t.aliases)
        .where(
            and_(t.aliases.c.model_id == model, t.aliases.c.alias == alias, t.aliases.c.revision == revision)
        )
        .values(version=version, revision=revision + 1, updated_at=now, updated_by=user)
    )
    if moved.rowcount != 1:
        raise Conflict(f"alias '{alias}' was moved by another client; read it again and retry", field="alias")
    record_event(conn, model, alias, (int(current.version), version), user, now)
    return revision + 1


def remove_alias(
    conn: Connection, model: int, alias: str, user: str, expected: int | None, now: datetime
) -> None:
    current = _current(conn, model, alias)
    if current is None:
        raise NotFound(f"alias '{alias}' does not exist", field="alias")
    _check_expected(current, expected, alias)
    removed = conn.execute(
        delete(t.aliases).where(
            and_(
                t.aliases.c.model_id == model,
                t.aliases.c.alias == alias,
                t.aliases.c.revision == current.revision,
            )
        )
    )
    if removed.rowcount != 1:
        raise Conflict(f"alias '{alias}' was moved by another client; read it again and retry", field="alias")
    record_event(conn, model, alias, (int(current.version), None), user, now)
