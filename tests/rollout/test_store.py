"""The rollout store on SQLite and PostgreSQL: one active rollout per model, compare-and-set, the
lease, events with their figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.errors import Conflict
from modelyard.rollout import schema as s
from modelyard.rollout.store import RolloutStore
from tests.rollout.support import CANARY, deploy_file, deployment

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[RolloutStore]:
    with RolloutStore.open(database_settings) as opened:
        yield opened


def _values(model: str = "spam") -> dict[str, object]:
    rollout = deployment(deploy_file(CANARY)).versions[1].spec.rollout
    return {
        "project": "mail", "model": model, "candidate": "v2", "baseline": "v1", "fingerprint": "f" * 64,
        "spec": rollout, "baseline_weight": 100, "state": s.RUNNING, "step": 0,
        "step_started_at": NOW, "snapshot": None, "blind_since": None,
    }  # fmt: skip


def test_one_active_rollout_per_model(store: RolloutStore) -> None:
    first = store.create(_values(), at=NOW, actor="alice", reason="go")
    with pytest.raises(Conflict):
        store.create(_values(), at=NOW, actor="bob", reason="again")
    ham = store.create(_values("ham"), at=NOW, actor="bob", reason="another model")
    ended = store.change(first, at=NOW, actor="bob", event="aborted", reason="stop", state=s.ABORTED)
    assert ended.ended_at == NOW
    second = store.create(_values(), at=NOW, actor="carol", reason="after the end")
    assert [r.id for r in store.active()] == [ham.id, second.id]
    assert store.latest("mail", "spam") == second
    assert second.spec == first.spec


def test_a_stale_change_is_refused(store: RolloutStore) -> None:
    record = store.create(_values(), at=NOW, actor="alice", reason="go")
    store.change(record, at=NOW, actor="controller", event="advanced", reason="passed", step=1)
    with pytest.raises(Conflict):
        store.change(record, at=NOW, actor="bob", event="aborted", reason="late", state=s.ABORTED)
    assert store.get(record.id).state == s.RUNNING


def test_events_keep_their_figures_infinities_included(store: RolloutStore) -> None:
    record = store.create(_values(), at=NOW, actor="alice", reason="go")
    figures = {"gates": [{"name": "p99_ratio", "value": float("inf")}], "count": 3}
    store.change(record, at=NOW, actor="controller", event="rolled_back", reason="slow", figures=figures,
                 state=s.ROLLED_BACK, snapshot={"candidate": {"requests": 1}})  # fmt: skip
    events = store.events(record.id)
    assert [(e.event, e.actor, e.state) for e in events] == [
        ("started", "alice", s.RUNNING),
        ("rolled_back", "controller", s.ROLLED_BACK),
    ]
    assert events[1].figures == {"gates": [{"name": "p99_ratio", "value": "inf"}], "count": 3}
    assert store.get(record.id).snapshot == {"candidate": {"requests": 1}}


def test_the_lease_has_one_holder_until_it_lapses_or_is_released(store: RolloutStore) -> None:
    assert store.lease("a", NOW, 6)
    assert store.lease("a", NOW + timedelta(seconds=3), 6)  # renewed
    assert not store.lease("b", NOW + timedelta(seconds=8), 6)
    assert store.lease("b", NOW + timedelta(seconds=9.5), 6)
    store.release("b", NOW + timedelta(seconds=10))
    assert store.lease("a", NOW + timedelta(seconds=10), 6)
