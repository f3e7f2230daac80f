"""The rollout store on SQLite and PostgreSQL: one active rollout per model, compare-and-set, the
lease (one holder however control planes race for it), events with their figures, pages."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from modelyard.control.settings import ControlSettings
from modelyard.errors import Conflict, InvalidInput
from modelyard.rollout import schema as s
from modelyard.rollout.store import RolloutStore
from tests.rollout.support import rollout_values

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RACERS = 4


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[RolloutStore]:
    with RolloutStore.open(database_settings) as opened:
        yield opened


def test_one_active_rollout_per_model(store: RolloutStore) -> None:
    first = store.create(rollout_values(), at=NOW, actor="alice", reason="go")
    with pytest.raises(Conflict):
        store.create(rollout_values(), at=NOW, actor="bob", reason="again")
    ham = store.create(rollout_values("ham"), at=NOW, actor="bob", reason="another model")
    ended = store.change(first, at=NOW, actor="bob", event="aborted", reason="stop", state=s.ABORTED)
    assert ended.ended_at == NOW
    second = store.create(rollout_values(), at=NOW, actor="carol", reason="after the end")
    assert [r.id for r in store.active()] == [ham.id, second.id]
    assert store.latest("mail", "spam") == second
    assert second.spec == first.spec


def test_a_stale_change_is_refused(store: RolloutStore) -> None:
    record = store.create(rollout_values(), at=NOW, actor="alice", reason="go")
    store.change(record, at=NOW, actor="controller", event="advanced", reason="passed", step=1)
    with pytest.raises(Conflict):
        store.change(record, at=NOW, actor="bob", event="aborted", reason="late", state=s.ABORTED)
    assert store.get(record.id).state == s.RUNNING


def test_events_keep_their_figures_infinities_included(store: RolloutStore) -> None:
    record = store.create(rollout_values(), at=NOW, actor="alice", reason="go")
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


@pytest.mark.parametrize("lapsed", [False, True], ids=["no-row-yet", "lapsed"])
def test_racing_control_planes_never_both_hold_the_lease(store: RolloutStore, lapsed: bool) -> None:
    if lapsed:
        assert store.lease("dead", NOW - timedelta(seconds=100), 6)  # a dead control plane's lease
    # Each racer stops after its first statement on the lease until all have run theirs (or a
    # second has passed: where the database makes the others wait, they cannot get there).
    barrier, first = threading.Barrier(RACERS), threading.local()

    @event.listens_for(store.engine, "after_cursor_execute")
    def hold(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "rollout_lease" in statement and not getattr(first, "done", False):
            first.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=1)

    got: dict[str, bool] = {}

    def take(name: str) -> None:
        got[name] = store.lease(name, NOW, 6)

    racers = [threading.Thread(target=take, args=(f"cp{i}",)) for i in range(RACERS)]
    try:
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
    finally:
        event.remove(store.engine, "after_cursor_execute", hold)
    assert len(got) == RACERS
    [holder] = [name for name, held in got.items() if held]
    assert not store.lease("late", NOW + timedelta(seconds=1), 6)
    assert store.lease(holder, NOW + timedelta(seconds=1), 6)


def test_pages_of_rollouts_and_of_events_reach_the_oldest(store: RolloutStore) -> None:
    first = store.create(rollout_values("m0"), at=NOW, actor="alice", reason="go")
    for i in range(1, 5):
        record = store.create(rollout_values(f"m{i}"), at=NOW, actor="alice", reason="go")
        store.change(record, at=NOW, actor="bob", event="aborted", reason="stop", state=s.ABORTED)
    assert [r.id for r in store.list(2)] == [5, 4]
    assert [r.id for r in store.list(2, before=4)] == [3, 2]
    assert [r.id for r in store.list(2, before=2)] == [first.id]
    events = store.recent_events(3)
    assert [(e.rollout_id, e.event) for e in events] == [(5, "aborted"), (5, "started"), (4, "aborted")]
    rest = store.recent_events(500, before=events[-1].id)
    assert [(e.rollout_id, e.event) for e in rest][-1] == (first.id, "started")
    assert len(events) + len(rest) == 9
    assert sorted(store.get_many([e.rollout_id for e in rest])) == [1, 2, 3, 4]
    with pytest.raises(InvalidInput):
        store.list(2, before=0)


def test_latest_each_has_every_models_newest_rollout(store: RolloutStore) -> None:
    spam = store.create(rollout_values(), at=NOW, actor="alice", reason="go")  # active: the oldest of all
    for _ in range(3):
        ham = store.create(rollout_values("ham"), at=NOW, actor="bob", reason="go")
        store.change(ham, at=NOW, actor="bob", event="aborted", reason="stop", state=s.ABORTED)
    assert [(r.model, r.id) for r in store.latest_each()] == [("ham", ham.id), ("spam", spam.id)]
