"""``DeployStore``: every apply of a deploy file, kept in the control-plane database.

An apply is recorded before it starts (:meth:`DeployStore.begin`, status ``running``) and closed when
it ends (:meth:`DeployStore.finish`: ``applied`` or ``failed``). The newest ``applied`` record is the
desired state (:meth:`DeployStore.current`) that the next diff compares against; a rollback is a new
apply of an earlier record's ``file_text``.

Only one apply runs at a time, and the database decides it: ``deploy_applies`` has a partial unique
index over its ``running`` rows (``deploy/schema.py``), so of two concurrent ``begin`` calls one insert
fails, whatever either of them read before. On SQLite the writers also queue on the write lock
(``BEGIN IMMEDIATE``); on PostgreSQL the second insert waits for the first transaction and fails once
it commits. A control plane that crashed mid-apply leaves its record ``running``; the next one calls
:meth:`DeployStore.recover_running` at start-up, or no apply could ever start again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import Row, Select, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.control.db import EngineStore, as_utc
from modelyard.deploy import schema as s
from modelyard.errors import Conflict, InvalidInput, NotFound

__all__ = ["MAX_HISTORY", "ApplyRecord", "ApplyStatus", "DeployStore"]

ApplyStatus = Literal["running", "applied", "failed"]
MAX_HISTORY = 1000  # records per history page
_MAX_ID = 2**31 - 1  # ids are INTEGER


@dataclass(frozen=True)
class ApplyRecord:
    """One apply: who started it and when, from what, the deploy file's text, what it did, its end.

    ``plan`` is whatever summary the caller stored (JSON data); ``message`` says what failed.
    """

    id: int
    created_at: datetime
    user: str
    source: str
    file_text: str
    status: ApplyStatus
    message: str
    plan: dict[str, Any]
    finished_at: datetime | None

    def to_dict(self, *, file_text: bool = True) -> dict[str, Any]:
        """JSON-ready data (ISO 8601 timestamps); without ``file_text`` for short listings."""
        data: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "user": self.user,
            "source": self.source,
            "status": self.status,
            "message": self.message,
            "plan": copy.deepcopy(self.plan),
            "finished_at": self.finished_at.isoformat() if self.finished_at is not None else None,
        }
        if file_text:
            data["file_text"] = self.file_text
        return data


class DeployStore(EngineStore):
    """The deploy history over an engine on the registry's database (already migrated).

    ``DeployStore(registry.engine)`` shares an open registry's engine; :meth:`open` makes its own.
    """

    # -- reads ------------------------------------------------------------------------------------

    def get(self, apply_id: int) -> ApplyRecord:
        """One apply; :class:`NotFound` (field ``apply``) if there is none."""
        _check_id(apply_id, "apply")
        with self._engine.connect() as conn:
            row = conn.execute(_by_id(apply_id)).first()
        if row is None:
            raise _missing(apply_id)
        return _record(row)

    def current(self) -> ApplyRecord | None:
        """The newest ``applied`` record: the desired state now. None before the first success."""
        return self._newest(s.APPLIED)

    def running(self) -> ApplyRecord | None:
        """The apply in progress, if there is one."""
        return self._newest(s.RUNNING)

    def _newest(self, status: str) -> ApplyRecord | None:
        query = select(s.applies).where(s.applies.c.status == status).order_by(s.applies.c.id.desc())
        with self._engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else _record(row)

    def history(self, limit: int = 50, before: int | None = None) -> list[ApplyRecord]:
        """Applies newest first: at most ``limit``, only those with an id below ``before`` if given.

        Keyset pages: pass the last record's id as ``before`` to get the next page.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_HISTORY}", field="limit")
        query = select(s.applies).order_by(s.applies.c.id.desc()).limit(limit)
        if before is not None:
            _check_id(before, "before", clamp=True)
            if before <= _MAX_ID:  # above it every id qualifies (and PostgreSQL's INTEGER overflows)
                query = query.where(s.applies.c.id < before)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    # -- writes -----------------------------------------------------------------------------------

    def begin(self, file_text: str, *, user: str, source: str, plan: Mapping[str, Any]) -> ApplyRecord:
        """Record a new apply as ``running``; :class:`Conflict` (field ``apply``) if one is running."""
        values = {
            "created_at": _now(),
            "user": _check_string(user, "user", s.USER_LENGTH),
            "source": _check_string(source, "source", s.SOURCE_LENGTH),
            "file_text": _check_string(file_text, "file_text"),
            "status": s.RUNNING,
            "message": "",
            "plan": _check_plan(plan),
            "finished_at": None,
        }
        try:
            with self._write() as conn:
                key = conn.execute(insert(s.applies).values(**values)).inserted_primary_key
                return _record(conn.execute(_by_id(int(cast(Row[Any], key)[0]))).one())
        except IntegrityError:  # uq_deploy_applies_running: another apply is running
            pass
        raise self._busy()

    def _busy(self) -> Conflict:
        running = self.running()
        if running is None:  # it finished in the meantime
            return Conflict("another apply was running; try again", field="apply")
        return Conflict(
            f"apply #{running.id} ({running.source or 'no source'}, by {running.user or 'unknown'},"
            f" started {running.created_at.isoformat()}) is still running",
            field="apply",
        )

    def finish(
        self, apply_id: int, *, status: ApplyStatus, message: str = "", plan: Mapping[str, Any] | None = None
    ) -> ApplyRecord:
        """Close a running apply as ``applied`` or ``failed``; ``plan`` (if given) replaces its plan.

        :class:`NotFound` if there is no such apply, :class:`Conflict` if it has already finished.
        """
        _check_id(apply_id, "apply")
        if status not in (s.APPLIED, s.FAILED):
            raise InvalidInput(f"status must be {s.APPLIED} or {s.FAILED}", field="status")
        values: dict[str, Any] = {
            "status": status,
            "message": _check_string(message, "message"),
            "finished_at": _now(),
        }
        if plan is not None:
            values["plan"] = _check_plan(plan)
        with self._write() as conn:
            where = (s.applies.c.id == apply_id) & (s.applies.c.status == s.RUNNING)
            if conn.execute(update(s.applies).where(where).values(**values)).rowcount != 1:
                row = conn.execute(_by_id(apply_id)).first()
                if row is None:
                    raise _missing(apply_id)
                raise Conflict(f"apply #{apply_id} has already finished ({row.status})", field="apply")
            return _record(conn.execute(_by_id(apply_id)).one())

    def recover_running(self, message: str) -> ApplyRecord | None:
        """Mark the running apply (left by a crashed control plane) ``failed`` with ``message``.

        Returns the record as marked, or None when no apply was running. Call it at start-up, before
        this control plane starts applies of its own.
        """
        running = self.running()
        if running is None:
            return None
        try:
            return self.finish(running.id, status="failed", message=message)
        except Conflict:  # it finished on its own meanwhile
            return None


# -- validation -----------------------------------------------------------------------------------


def _check_id(value: object, field: str, *, clamp: bool = False) -> None:
    """A positive integer id (``clamp``: any size, the caller caps it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (not clamp and value > _MAX_ID):
        raise InvalidInput(f"{field} must be a positive integer id", field=field)


def _check_string(value: object, field: str, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    return value


def _check_plan(plan: object) -> dict[str, Any]:
    """``plan`` as the JSON data it will read back as (tuples become lists, keys strings)."""
    if not isinstance(plan, Mapping):
        raise InvalidInput("plan must be a mapping of JSON data", field="plan")
    try:
        return cast(dict[str, Any], json.loads(json.dumps(dict(plan), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"plan must be JSON data: {exc}", field="plan") from None


# -- queries --------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _by_id(apply_id: int) -> Select[Any]:
    return select(s.applies).where(s.applies.c.id == apply_id)


def _missing(apply_id: int) -> NotFound:
    return NotFound(f"apply #{apply_id} not found", field="apply")


def _record(row: Row[Any]) -> ApplyRecord:
    return ApplyRecord(
        id=int(row.id),
        created_at=as_utc(row.created_at),
        user=row.user,
        source=row.source,
        file_text=row.file_text,
        status=cast(ApplyStatus, row.status),
        message=row.message,
        plan=dict(row.plan),
        finished_at=None if row.finished_at is None else as_utc(row.finished_at),
    )
