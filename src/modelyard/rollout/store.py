"""``RolloutStore``: rollouts, their transitions and the controller's lease in the control-plane
database (``rollout/schema.py``).

Every change of a rollout is a compare-and-set on its ``revision`` and writes its event in the same
transaction, so the history never misses a transition and two writers (the controller's tick and a
``deploy abort``) cannot both win: the loser gets :class:`Conflict` and reads again. The lease is
taken the same way, by one conditional UPDATE, so two control planes never both hold it.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from modelyard.control.db import EngineStore, as_utc
from modelyard.deploy.spec import Rollout
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.rollout import schema as s

__all__ = ["MAX_LIST", "RolloutEvent", "RolloutRecord", "RolloutStore"]

MAX_LIST = 500  # rollouts, or events, per page
MAX_EVENTS = 200  # events per rollout in a listing (the newest)


@dataclasses.dataclass(frozen=True)
class RolloutRecord:
    """One rollout as the database holds it: the state the controller resumes from."""

    id: int
    project: str
    model: str
    candidate: str
    baseline: str
    fingerprint: str
    spec: Rollout
    baseline_weight: int
    state: str
    step: int
    step_started_at: datetime
    snapshot: dict[str, Any] | None
    blind_since: datetime | None
    reason: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    ended_at: datetime | None
    revision: int

    @property
    def active(self) -> bool:
        return self.state in s.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (ISO 8601 timestamps; the rollout block as the file would write it)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "snapshot"}
        data["spec"] = self.spec.model_dump(mode="json", by_alias=True)
        for name, value in data.items():
            if isinstance(value, datetime):
                data[name] = value.isoformat()
        return data


@dataclasses.dataclass(frozen=True)
class RolloutEvent:
    """One transition: when, who (a token's name or ``controller``), what, why, on what figures."""

    id: int
    rollout_id: int
    at: datetime
    actor: str
    event: str
    state: str
    step: int
    reason: str
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}


class RolloutStore(EngineStore):
    """The rollouts over an engine on the control-plane database (already migrated)."""

    # -- reads ------------------------------------------------------------------------------------

    def get(self, rollout_id: int) -> RolloutRecord:
        with self._engine.connect() as conn:
            row = conn.execute(_by_id(rollout_id)).first()
        if row is None:
            raise NotFound(f"rollout #{rollout_id} not found", field="rollout")
        return _record(row)

    def latest(self, project: str, model: str) -> RolloutRecord | None:
        """The model's newest rollout, whatever its state."""
        where = (s.rollouts.c.project == project) & (s.rollouts.c.model == model)
        query = select(s.rollouts).where(where).order_by(s.rollouts.c.id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row)

    def active(self) -> builtins.list[RolloutRecord]:
        """Every rollout running, paused or halted: what the controller drives."""
        query = select(s.rollouts).where(s.rollouts.c.state.in_(s.ACTIVE)).order_by(s.rollouts.c.id)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def list(self, limit: int = 50, before: int | None = None) -> builtins.list[RolloutRecord]:
        """Rollouts, newest first; ``before``: only those with a smaller id (the next page after a
        page whose last rollout had that id)."""
        query = select(s.rollouts).order_by(s.rollouts.c.id.desc()).limit(_checked(limit, before))
        if before is not None:
            query = query.where(s.rollouts.c.id < before)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def latest_each(self) -> builtins.list[RolloutRecord]:
        """Each model's newest rollout, by model: every active rollout is among them (a model's
        active rollout is its newest: a new one supersedes it first)."""
        newest = select(func.max(s.rollouts.c.id)).group_by(s.rollouts.c.project, s.rollouts.c.model)
        query = (
            select(s.rollouts)
            .where(s.rollouts.c.id.in_(newest.scalar_subquery()))
            .order_by(s.rollouts.c.project, s.rollouts.c.model)
        )
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def events(self, rollout_id: int, limit: int = MAX_EVENTS) -> builtins.list[RolloutEvent]:
        """A rollout's transitions, oldest first (the newest ``limit``)."""
        query = (
            select(s.events)
            .where(s.events.c.rollout_id == rollout_id)
            .order_by(s.events.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_event(row) for row in reversed(conn.execute(query).all())]

    def recent_events(self, limit: int = 50, before: int | None = None) -> builtins.list[RolloutEvent]:
        """Every rollout's transitions together, newest first; ``before``: only those with a
        smaller id (the next page), so that a reader can go back through all of them."""
        query = select(s.events).order_by(s.events.c.id.desc()).limit(_checked(limit, before))
        if before is not None:
            query = query.where(s.events.c.id < before)
        with self._engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def get_many(self, ids: Iterable[int]) -> dict[int, RolloutRecord]:
        """The rollouts of ``ids`` that exist, by id."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        query = select(s.rollouts).where(s.rollouts.c.id.in_(wanted))
        with self._engine.connect() as conn:
            return {record.id: record for record in map(_record, conn.execute(query))}

    # -- writes -----------------------------------------------------------------------------------

    def create(self, values: Mapping[str, Any], *, at: datetime, actor: str, reason: str) -> RolloutRecord:
        """A new rollout (``values``: its columns but the bookkeeping) and its ``started`` event;
        :class:`Conflict` when the model already has an active one."""
        row = {
            **values,
            "spec": cast(Rollout, values["spec"]).model_dump(mode="json", by_alias=True),
            "created_at": at,
            "created_by": actor[: s.USER_LENGTH],
            "updated_at": at,
            "ended_at": None,
            "reason": reason,
            "revision": 1,
        }
        try:
            with self._write() as conn:
                key = conn.execute(insert(s.rollouts).values(**row)).inserted_primary_key
                record = _record(conn.execute(_by_id(int(cast(Row[Any], key)[0]))).one())
                _add_event(conn, record, at, actor, "started", reason, {})
                return record
        except IntegrityError:  # uq_rollouts_active
            raise Conflict(
                f"{values['project']}/{values['model']} already has a rollout in progress", field="rollout"
            ) from None

    def change(
        self,
        record: RolloutRecord,
        *,
        at: datetime,
        actor: str,
        event: str,
        reason: str,
        figures: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> RolloutRecord:
        """Set ``values`` on ``record`` if nobody changed it since it was read, and record
        ``event``; :class:`Conflict` (field ``rollout``) when somebody did."""
        state = values.get("state", record.state)
        if state in s.ENDED and record.state not in s.ENDED:
            values["ended_at"] = at
        values |= {"updated_at": at, "revision": record.revision + 1, "reason": reason}
        where = (s.rollouts.c.id == record.id) & (s.rollouts.c.revision == record.revision)
        with self._write() as conn:
            if conn.execute(update(s.rollouts).where(where).values(**values)).rowcount != 1:
                raise Conflict(f"rollout #{record.id} changed meanwhile; try again", field="rollout")
            changed = _record(conn.execute(_by_id(record.id)).one())
            _add_event(conn, changed, at, actor, event, reason, figures or {})
            return changed

    # -- the lease: one control plane drives the rollouts at a time ---------------------------------

    def lease(self, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take or renew the lease for ``holder`` until ``now + ttl_s``; False while another
        holder's lease runs.

        One conditional UPDATE decides: it matches only a lease that is ``holder``'s own or has
        lapsed, and the row count says whether it did. Reading the row first and writing it after
        would let two control planes that read the same lapsed lease both take it (PostgreSQL's
        read committed lets both writes through); here the second UPDATE waits for the first and
        then no longer matches. The row is inserted once, by whoever comes first."""
        now = now.astimezone(UTC)  # SQLite compares the stored UTC timestamps as text
        until = now + timedelta(seconds=ttl_s)
        ours_or_lapsed = (s.lease.c.id == s.LEASE_ID) & (
            (s.lease.c.holder == holder) | (s.lease.c.expires_at <= now)
        )
        try:
            with self._write() as conn:
                taken = update(s.lease).where(ours_or_lapsed).values(holder=holder, expires_at=until)
                if conn.execute(taken).rowcount == 1:
                    return True
                if conn.execute(select(s.lease.c.id).where(s.lease.c.id == s.LEASE_ID)).first():
                    return False  # another holder's lease runs
                conn.execute(insert(s.lease).values(id=s.LEASE_ID, holder=holder, expires_at=until))
                return True
        except IntegrityError:  # another control plane inserted the row first: the lease is its
            return False

    def release(self, holder: str, now: datetime) -> None:
        """Give the lease up (a clean stop), so a restarted control plane resumes at once."""
        where = (s.lease.c.id == s.LEASE_ID) & (s.lease.c.holder == holder)
        with self._write() as conn:
            conn.execute(update(s.lease).where(where).values(expires_at=now.astimezone(UTC)))


def _checked(limit: int, before: int | None) -> int:
    """``limit`` after checking it and the ``before`` cursor of a page."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST}", field="limit")
    if before is not None and (isinstance(before, bool) or not isinstance(before, int) or before < 1):
        raise InvalidInput("before must be a positive integer (an id)", field="before")
    return limit


def _add_event(
    conn: Connection,
    record: RolloutRecord,
    at: datetime,
    actor: str,
    event: str,
    reason: str,
    figures: Mapping[str, Any],
) -> None:
    conn.execute(
        insert(s.events).values(
            rollout_id=record.id,
            at=at,
            actor=actor[: s.USER_LENGTH],
            event=event,
            state=record.state,
            step=record.step,
            reason=reason,
            figures=_json_safe(dict(figures)),
        )
    )


def _json_safe(value: Any) -> Any:
    """``value`` with infinities and NaN spelled as strings (JSON columns refuse them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _by_id(rollout_id: int) -> Select[Any]:
    return select(s.rollouts).where(s.rollouts.c.id == rollout_id)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _record(row: Row[Any]) -> RolloutRecord:
    return RolloutRecord(
        id=int(row.id),
        project=row.project,
        model=row.model,
        candidate=row.candidate,
        baseline=row.baseline,
        fingerprint=row.fingerprint,
        spec=Rollout.model_validate(row.spec),
        baseline_weight=int(row.baseline_weight),
        state=row.state,
        step=int(row.step),
        step_started_at=as_utc(row.step_started_at),
        snapshot=dict(row.snapshot) if isinstance(row.snapshot, dict) else None,
        blind_since=_maybe_utc(row.blind_since),
        reason=row.reason,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        updated_at=as_utc(row.updated_at),
        ended_at=_maybe_utc(row.ended_at),
        revision=int(row.revision),
    )


def _event(row: Row[Any]) -> RolloutEvent:
    return RolloutEvent(
        id=int(row.id),
        rollout_id=int(row.rollout_id),
        at=as_utc(row.at),
        actor=row.actor,
        event=row.event,
        state=row.state,
        step=int(row.step),
        reason=row.reason,
        figures=dict(row.figures),
    )
