"""Validation verdicts on versions: recording them, reading them, and the rule an alias move with
``require_validation`` checks.

A version passes that rule when its *latest* verdict is ``pass``: a later ``fail`` or
``inconclusive`` (say, against a newer dataset) withdraws an earlier pass. The check runs in the
alias move's own transaction, so a verdict recorded meanwhile is either seen or comes after the move.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.engine import Connection

from modelyard.control.db import as_utc
from modelyard.errors import Conflict
from modelyard.registry import schema as t
from modelyard.registry.types import NewValidation, Validation

__all__ = ["MAX_LISTED", "insert_validation", "latest_validations", "require_passing"]

MAX_LISTED = 100  # verdicts a listing returns at most (the newest)


def insert_validation(
    conn: Connection, version_id: int, name: str, version: int, verdict: NewValidation, now: datetime
) -> Validation:
    values = verdict.model_dump(mode="json")
    statement = insert(t.validations).values(version_id=version_id, created_at=now, **values)
    row = conn.execute(statement.returning(*t.validations.c)).one()
    return to_validation(row, name, version)


def latest_validations(
    conn: Connection, version_id: int, name: str, version: int, limit: int = MAX_LISTED
) -> list[Validation]:
    """The version's verdicts, newest first."""
    rows = conn.execute(
        select(t.validations)
        .where(t.validations.c.version_id == version_id)
        .order_by(t.validations.c.id.desc())
        .limit(max(1, min(limit, MAX_LISTED)))
    )
    return [to_validation(row, name, version) for row in rows]


def require_passing(conn: Connection, version_id: int, name: str, version: int) -> None:
    """:class:`Conflict` unless the version's latest verdict is a pass."""
    latest = latest_validations(conn, version_id, name, version, limit=1)
    if not latest:
        raise Conflict(
            f"model '{name}' version {version} has no validation verdict; run modelyard validate "
            f"{name}/{version} --baseline ... first",
            field="require_validation",
        )
    if latest[0].outcome != "pass":
        verdict = latest[0]
        raise Conflict(
            f"model '{name}' version {version} did not pass its latest validation: {verdict.outcome} "
            f"against {verdict.baseline} on {verdict.dataset} ({verdict.created_at:%Y-%m-%d %H:%M} UTC)",
            field="require_validation",
        )


def to_validation(row: Row[Any], name: str, version: int) -> Validation:
    return Validation(
        id=row.id,
        name=name,
        version=version,
        created_at=as_utc(row.created_at),
        outcome=row.outcome,
        baseline=row.baseline,
        baseline_sha256=row.baseline_sha256,
        dataset=row.dataset,
        dataset_sha256=row.dataset_sha256,
        rows=row.rows,
        policy=row.policy,
        gates=row.gates,
        figures=row.figures,
        user=row.user,
    )
