"""Which pushes and alias moves a validation job answers, found by reading the registry's tables.

The registry does not call anyone when a version is registered or an alias moves: a push through
the CLI on the local database never passes through the control plane's process at all. So the
control plane looks: every poll reads the versions (``model_versions.created_at``) and the alias
moves (``alias_events``) of the models with a setup that came since the setup's ``watch_from`` and
have no job yet, and queues one for each. Whoever wrote them, from whatever process, they are in
the database, and so they are seen.

"No job yet" is read from the job's ``(source, source_id, source_at)`` key, which is unique: two
control planes polling the same database both try to queue the job, and the second insert fails
and is ignored. No cursor is kept, so rows that commit out of id order (PostgreSQL) are not
skipped. To keep the scan short, ``watch_from`` then moves up to ``MARGIN`` before the poll: a
registration is one short transaction, so anything stamped before that was committed, and seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.engine import Connection, Engine

from modelyard.control.db import WRITE
from modelyard.registry import schema as r
from modelyard.validation import job_schema as s
from modelyard.validation.job_store import now, try_enqueue

__all__ = ["MARGIN", "Trigger", "find_triggers", "poll_triggers"]

MARGIN = timedelta(minutes=10)  # how far back each poll keeps looking, after it has seen everything


@dataclass(frozen=True)
class Trigger:
    """A registry row that asks for a job: a pushed version, or a move of the watched alias."""

    model_id: int
    version: int
    trigger: str  # push, alias:staging
    source: tuple[str, int, datetime]  # (push|alias, the row's id, the row's time)
    user: str


def find_triggers(conn: Connection) -> list[Trigger]:
    """Versions and alias moves since each setup's ``watch_from`` that have no job yet, oldest first."""
    v, e, j = r.versions, r.alias_events, s.jobs
    pushed = select(v.c.id, v.c.model_id, v.c.version, v.c.created_at, v.c.user).join(
        s.setups,
        and_(
            s.setups.c.model_id == v.c.model_id, s.setups.c.on_push, v.c.created_at >= s.setups.c.watch_from
        ),
    )
    pushed = pushed.where(
        ~exists().where(and_(j.c.source == "push", j.c.source_id == v.c.id, j.c.source_at == v.c.created_at))
    )
    moved = select(e.c.id, e.c.model_id, e.c.to_version, e.c.at, e.c.user, e.c.alias).join(
        s.setups,
        and_(
            s.setups.c.model_id == e.c.model_id,
            s.setups.c.on_alias == e.c.alias,
            e.c.at >= s.setups.c.watch_from,
        ),
    )
    moved = moved.where(
        e.c.to_version.is_not(None),
        ~exists().where(and_(j.c.source == "alias", j.c.source_id == e.c.id, j.c.source_at == e.c.at)),
    )
    found = [
        Trigger(row.model_id, row.version, "push", ("push", row.id, row.created_at), row.user)
        for row in conn.execute(pushed.order_by(v.c.id))
    ]
    found += [
        Trigger(row.model_id, row.to_version, f"alias:{row.alias}", ("alias", row.id, row.at), row.user)
        for row in conn.execute(moved.order_by(e.c.id))
    ]
    return found


def poll_triggers(engine: Engine) -> list[int]:
    """Queue a job for every trigger not queued yet; the ids of the jobs queued.

    A trigger for a version that already has a job waiting or running (a push with ``--alias
    staging`` is two triggers) is recorded as ``skipped``, naming that job, rather than run twice.
    """
    started = now()
    with engine.connect() as conn:
        found = find_triggers(conn)
        stale = conn.execute(
            select(s.setups.c.model_id).where(s.setups.c.watch_from < started - 2 * MARGIN).limit(1)
        ).first()
    queued: list[int] = []
    if found:
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            for trigger in found:
                job = _queue(conn, trigger)
                if job is not None:
                    queued.append(job)
    if stale is not None:  # move the scan's start up now and then (a write, so not every poll)
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            conn.execute(
                update(s.setups)
                .where(s.setups.c.watch_from < started - MARGIN)
                .values(watch_from=started - MARGIN)
            )
    return queued


def _queue(conn: Connection, trigger: Trigger) -> int | None:
    busy = conn.execute(
        select(s.jobs.c.id).where(
            s.jobs.c.model_id == trigger.model_id,
            s.jobs.c.version == trigger.version,
            s.jobs.c.status.in_((s.QUEUED, s.RUNNING)),
        )
    ).scalar()
    args = (trigger.model_id, trigger.version, trigger.trigger, trigger.source, trigger.user)
    if busy is not None:
        try_enqueue(conn, *args, status=s.SKIPPED, reason=f"the same version is already in job {busy}")
        return None
    return try_enqueue(conn, *args)
