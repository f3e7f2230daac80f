"""``JobStore``: validation setups and validation jobs in the control-plane database.

Every state change of a job is one UPDATE guarded by what the writer believes the row to be, so
the database decides between racing writers: :meth:`JobStore.claim` moves ``queued`` to
``running`` only where the row is still ``queued`` (of two control planes, one gets it), and a
runner renews, finishes or releases a job only where it is still ``running`` under its own name (a
runner whose lease lapsed, and whose job another took over, changes nothing).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from modelyard.control.db import EngineStore, as_utc
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import schema as registry_tables
from modelyard.registry.refs import check_name, check_text
from modelyard.validation import job_schema as s
from modelyard.validation.setup import JobView, SetupRequest, ValidationSetup, checked_setup

__all__ = ["MAX_LISTED", "MAX_LOG", "JobStore", "now"]

MAX_LISTED = 200  # jobs a listing returns at most (the newest)
MAX_LOG = 64 * 1024  # characters of a job's log kept: the first lines and the last


def now() -> datetime:
    return datetime.now(UTC)


def capped(log: str, limit: int = MAX_LOG) -> str:
    """``log`` within ``limit`` characters: its head and its tail, the middle said to be cut."""
    if len(log) <= limit:
        return log
    keep = (limit - 40) // 2
    return f"{log[:keep]}\n... ({len(log) - 2 * keep} characters cut) ...\n{log[-keep:]}"


class JobStore(EngineStore):
    """Setups and jobs on ``engine`` (the registry's, in the control plane: one pool); :meth:`open`
    makes its own (what the CLI uses on the local database)."""

    # -- setups -----------------------------------------------------------------------------------

    def put_setup(self, name: str, request: SetupRequest, user: str = "") -> ValidationSetup:
        """Create or replace ``name``'s setup. A replaced setup keeps its ``watch_from``: a push that
        came just before the change is still seen."""
        setup = checked_setup(check_name(name), request, user)
        at = now()
        values = {
            "dataset": setup.dataset, "labels": setup.labels, "output": setup.output,
            "policy": setup.policy, "baseline": setup.baseline, "on_push": setup.on_push,
            "on_alias": setup.on_alias, "promote_to": setup.promote_to, "updated_at": at,
            "updated_by": setup.updated_by,
        }  # fmt: skip
        with self._write() as conn:
            model = _model_id(conn, name)
            done = conn.execute(update(s.setups).where(s.setups.c.model_id == model).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(s.setups).values(model_id=model, watch_from=at, **values))
        return self.get_setup(name)

    def get_setup(self, name: str) -> ValidationSetup:
        with self.engine.connect() as conn:
            model = _model_id(conn, name)
            row = conn.execute(select(s.setups).where(s.setups.c.model_id == model)).first()
        if row is None:
            raise NotFound(f"model '{name}' has no validation setup", field="validation")
        return to_setup(row, name)

    def clear_setup(self, name: str) -> None:
        """Forget ``name``'s setup (its jobs stay, for their history); NotFound if it has none."""
        with self._write() as conn:
            model = _model_id(conn, name)
            done = conn.execute(delete(s.setups).where(s.setups.c.model_id == model))
        if done.rowcount == 0:
            raise NotFound(f"model '{name}' has no validation setup", field="validation")

    # -- jobs: queueing and reading ----------------------------------------------------------------

    def run_now(self, name: str, version: int, user: str = "") -> JobView:
        """Queue a job for ``name/version`` by hand; Conflict without a setup, NotFound without it."""
        check_text(user, "user", 200)
        with self._write() as conn:
            model = _model_id(conn, name)
            found = conn.execute(
                select(registry_tables.versions.c.id).where(
                    and_(
                        registry_tables.versions.c.model_id == model,
                        registry_tables.versions.c.version == version,
                    )
                )
            ).first()
            if found is None:
                raise NotFound(f"model '{name}' has no version {version}", field="version")
            if conn.execute(select(s.setups.c.model_id).where(s.setups.c.model_id == model)).first() is None:
                raise Conflict(
                    f"model '{name}' has no validation setup: set one first "
                    f"(modelyard registry validation set {name} --data ...)",
                    field="validation",
                )
            job = enqueue(conn, model, version, "manual", ("manual", None, None), user)
        return self.get_job(job)

    def get_job(self, job_id: int) -> JobView:
        with self.engine.connect() as conn:
            row = conn.execute(_jobs_with_names().where(s.jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"no validation job {job_id}", field="id")
        return to_job(row, with_log=True)

    def list_jobs(self, name: str, limit: int = 50) -> builtins.list[JobView]:
        """``name``'s jobs, newest first, without their logs."""
        if not 1 <= limit <= MAX_LISTED:
            raise InvalidInput(f"limit must be between 1 and {MAX_LISTED}", field="limit")
        with self.engine.connect() as conn:
            model = _model_id(conn, name)
            rows = conn.execute(
                _jobs_with_names().where(s.jobs.c.model_id == model).order_by(s.jobs.c.id.desc()).limit(limit)
            )
            return [to_job(row) for row in rows]

    def setup_by_id(self, model_id: int) -> ValidationSetup | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(s.setups, registry_tables.models.c.name)
                .join(registry_tables.models, registry_tables.models.c.id == s.setups.c.model_id)
                .where(s.setups.c.model_id == model_id)
            ).first()
        return None if row is None else to_setup(row, row.name)

    # -- jobs: what a runner does -------------------------------------------------------------------

    def claim(self, runner: str, lease_s: float) -> JobView | None:
        """The oldest queued job, now ``running`` under ``runner``; None when there is none to take.

        The UPDATE's ``status = 'queued'`` condition is the compare-and-set: of two runners that
        read the same job, one changes the row and the other matches nothing and tries the next."""
        for _ in range(10):
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(s.jobs.c.id).where(s.jobs.c.status == s.QUEUED).order_by(s.jobs.c.id).limit(1)
                ).scalar()
            if found is None:
                return None
            at = now()
            with self._write() as conn:
                taken = conn.execute(
                    update(s.jobs)
                    .where(and_(s.jobs.c.id == found, s.jobs.c.status == s.QUEUED))
                    .values(
                        status=s.RUNNING, runner=runner, started_at=at, finished_at=None,
                        lease_until=at + timedelta(seconds=lease_s), attempts=s.jobs.c.attempts + 1,
                    )
                )  # fmt: skip
            if taken.rowcount == 1:
                return self.get_job(int(found))
        return None

    def renew(self, job_id: int, runner: str, lease_s: float, log: str) -> bool:
        """Extend ``runner``'s lease on the job and save its log so far; False if no longer its own."""
        values = {"lease_until": now() + timedelta(seconds=lease_s), "log": capped(log)}
        return self._own(job_id, runner, values)

    def finish(self, job_id: int, runner: str, status: str, **fields: Any) -> bool:
        """End ``runner``'s job with ``status`` (and ``reason``, ``log``, ``validation_id``...)."""
        if status not in s.DONE:
            raise ValueError(f"not a final status: {status}")
        values = {**fields, "status": status, "finished_at": now(), "lease_until": None}
        if "log" in values:
            values["log"] = capped(str(values["log"]))
        return self._own(job_id, runner, values)

    def release(self, job_id: int, runner: str, log: str) -> bool:
        """Put ``runner``'s job back in the queue (the control plane is stopping): another runs it."""
        values = {"status": s.QUEUED, "runner": None, "lease_until": None, "log": capped(log)}
        return self._own(job_id, runner, values)

    def _own(self, job_id: int, runner: str, values: Mapping[str, Any]) -> bool:
        with self._write() as conn:
            done = conn.execute(
                update(s.jobs)
                .where(and_(s.jobs.c.id == job_id, s.jobs.c.status == s.RUNNING, s.jobs.c.runner == runner))
                .values(**values)
            )
        return done.rowcount == 1

    def requeue_runner(self, runner: str, max_attempts: int) -> builtins.list[int]:
        """Queue again the jobs ``runner`` was running: it restarted, so nobody runs them now."""
        mine = and_(s.jobs.c.status == s.RUNNING, s.jobs.c.runner == runner)
        return self._requeue(mine, "restarted", max_attempts)

    def requeue_lapsed(self, max_attempts: int) -> builtins.list[int]:
        """Queue again the jobs whose runner's lease lapsed: it died with them."""
        lapsed = and_(s.jobs.c.status == s.RUNNING, s.jobs.c.lease_until < now())
        return self._requeue(lapsed, "stopped", max_attempts)

    def _requeue(self, which: Any, what: str, max_attempts: int) -> builtins.list[int]:
        """The jobs ``which`` selects queued again, or ended ``error`` after ``max_attempts`` tries
        (a job that takes its control plane down with it must not take down every one after it).
        Returns the ids queued again."""
        with self.engine.connect() as conn:  # a read first: most sweeps find nothing, and need no write
            if conn.execute(select(s.jobs.c.id).where(which).limit(1)).first() is None:
                return []
        at = now()
        requeued = []
        with self._write() as conn:
            for row in list(conn.execute(select(s.jobs.c.id, s.jobs.c.attempts, s.jobs.c.log).where(which))):
                again = row.attempts < max_attempts
                note = (
                    f"the control plane running this job {what}; queued again"
                    if again
                    else f"the control plane running this job {what}, {row.attempts} times; given up"
                )
                values: dict[str, Any] = {
                    "status": s.QUEUED if again else s.ERROR,
                    "runner": None,
                    "lease_until": None,
                    "log": capped(f"{row.log}{note}\n"),
                }
                if not again:
                    values.update(finished_at=at, reason=note)
                conn.execute(update(s.jobs).where(and_(s.jobs.c.id == row.id, which)).values(**values))
                if again:
                    requeued.append(int(row.id))
        return requeued


def enqueue(
    conn: Connection,
    model_id: int,
    version: int,
    trigger: str,
    source: tuple[str, int | None, datetime | None],
    user: str,
    *,
    status: str = s.QUEUED,
    reason: str = "",
) -> int:
    """Insert a job in the caller's transaction; its id. A trigger already queued (another poller
    was first) raises IntegrityError, inside a savepoint the caller may catch."""
    values = {
        "model_id": model_id, "version": version, "trigger": trigger, "source": source[0],
        "source_id": source[1], "source_at": source[2], "status": status, "reason": reason,
        "requested_by": user[:200], "created_at": now(), "attempts": 0, "log": "",
        "finished_at": now() if status in s.DONE else None,
    }  # fmt: skip
    with conn.begin_nested():
        return int(conn.execute(insert(s.jobs).values(**values).returning(s.jobs.c.id)).scalar_one())


def try_enqueue(conn: Connection, *args: Any, **kwargs: Any) -> int | None:
    """:func:`enqueue`, None when the trigger was queued already."""
    try:
        return enqueue(conn, *args, **kwargs)
    except IntegrityError:
        return None


def _model_id(conn: Connection, name: str) -> int:
    found = conn.execute(
        select(registry_tables.models.c.id).where(registry_tables.models.c.name == name)
    ).scalar()
    if found is None:
        raise NotFound(f"model '{name}' not found", field="model")
    return int(found)


def _jobs_with_names() -> Any:
    models = registry_tables.models
    return select(s.jobs, models.c.name).join(models, models.c.id == s.jobs.c.model_id)


def to_setup(row: Row[Any], name: str) -> ValidationSetup:
    triggers = (["push"] if row.on_push else []) + ([f"alias:{row.on_alias}"] if row.on_alias else [])
    return ValidationSetup(
        name=name, dataset=row.dataset, labels=row.labels, output=row.output, policy=row.policy,
        baseline=row.baseline, triggers=triggers, promote_to=row.promote_to,
        updated_at=as_utc(row.updated_at), updated_by=row.updated_by,
    )  # fmt: skip


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def to_job(row: Row[Any], *, with_log: bool = False) -> JobView:
    return JobView(
        id=row.id, name=row.name, version=row.version, trigger=row.trigger, status=row.status,
        reason=row.reason, requested_by=row.requested_by, created_at=as_utc(row.created_at),
        started_at=_utc(row.started_at), finished_at=_utc(row.finished_at), attempts=row.attempts,
        validation_id=row.validation_id, promotion=row.promotion, log=row.log if with_log else None,
    )  # fmt: skip
