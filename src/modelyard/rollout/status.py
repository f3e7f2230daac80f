"""What ``deploy status`` and the REST API show of a rollout: where it is, how long the step has
left, each gate's value now against its threshold, and every transition with its figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelyard.errors import NotFound
from modelyard.rollout import schema as s
from modelyard.rollout.controller import Controller
from modelyard.rollout.plan import INCONCLUSIVE_GRACE, bounds_s, describe_step
from modelyard.rollout.store import RolloutEvent, RolloutRecord

__all__ = ["describe", "latest", "listing", "show", "transitions"]


def describe(controller: Controller, record: RolloutRecord, *, events: bool = True) -> dict[str, Any]:
    """``record`` as JSON data, with ``at`` (the step in words), ``time_left_s`` (of the step's
    time; ``grace_left_s``: of the wait for evidence after it), ``reading`` (the gates now) and
    ``events`` (oldest first)."""
    spec, now = record.spec, controller.clock()
    low, high = bounds_s(spec)
    data = record.to_dict() | {
        "steps": [describe_step(spec, i) for i in range(len(spec.steps))],
        "at": describe_step(spec, record.step),
        "min_duration_s": low,
        "max_duration_s": high,
        "evidence": _evidence_state(controller, record),
        "time_left_s": None,
        "grace_left_s": None,
        "reading": None,
    }
    if record.active and record.state != s.HALTED:
        holding = record.step >= len(spec.steps)
        duration = spec.hold_s if holding else spec.steps[record.step].duration
        elapsed = (now - record.step_started_at).total_seconds()
        data["time_left_s"] = max(0.0, duration - elapsed)
        data["grace_left_s"] = 0.0 if holding else max(0.0, duration * (1 + INCONCLUSIVE_GRACE) - elapsed)
        reading = controller.reading(record)
        data["reading"] = reading.to_dict() if reading is not None else None
    if events:
        data["events"] = [event.to_dict() for event in controller.store.events(record.id)]
    return data


def _evidence_state(controller: Controller, record: RolloutRecord) -> str:
    if controller.evidence is None:
        return "no analysis"
    blindness = controller.blindness()
    if blindness is not None:
        since = record.blind_since.isoformat() if record.blind_since else "now"
        return f"unreadable since {since} ({blindness})"
    return "ok"


def show(controller: Controller, project: str, model: str) -> dict[str, Any]:
    """The model's newest rollout, described; :class:`NotFound` when it never had one."""
    latest = controller.store.latest(project, model)
    if latest is None:
        raise NotFound(f"{project}/{model} has no rollout", field="rollout")
    return describe(controller, latest)


def listing(controller: Controller, limit: int = 50, before: int | None = None) -> dict[str, Any]:
    """A page of rollouts, newest first, described with their events; ``next``: the ``before`` of
    the next page (None after the last)."""
    found = controller.store.list(limit, before)
    return {
        "rollouts": [describe(controller, record) for record in found],
        "next": _next(found, limit),
    }


def latest(controller: Controller) -> list[dict[str, Any]]:
    """Each model's newest rollout, described (every active rollout among them)."""
    return [describe(controller, record) for record in controller.store.latest_each()]


def transitions(controller: Controller, limit: int = 50, before: int | None = None) -> dict[str, Any]:
    """A page of every rollout's events, newest first, each with its rollout's ``project``,
    ``model`` and ``candidate``; ``next``: the ``before`` of the next page (None after the last)."""
    found = controller.store.recent_events(limit, before)
    records = controller.store.get_many(event.rollout_id for event in found)
    events = []
    for event in found:
        record = records[event.rollout_id]
        names = {"project": record.project, "model": record.model, "candidate": record.candidate}
        events.append(event.to_dict() | names)
    return {"events": events, "next": _next(found, limit)}


def _next(page: Sequence[RolloutRecord | RolloutEvent], limit: int) -> int | None:
    """The cursor of the page after ``page`` (newest first): its last id, unless it was the last."""
    return page[-1].id if len(page) == limit else None
