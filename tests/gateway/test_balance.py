"""The balancers on their own: smooth weighted round robin and replica passive health."""

from __future__ import annotations

import collections
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.gateway.balance import ReplicaPool, SmoothWeighted


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6).filter(lambda w: sum(w) > 0))
def test_every_window_of_sum_weights_picks_gives_each_item_exactly_its_weight(weights: list[int]) -> None:
    names = [f"v{i}" for i in range(len(weights))]
    split = SmoothWeighted(names, weights)
    total = sum(weights)
    for _ in range(3):  # three consecutive windows, not just the first
        window = collections.Counter(split.pick() for _ in range(total))
        assert window == {name: weight for name, weight in zip(names, weights, strict=True) if weight}


@pytest.mark.parametrize(("big", "small"), [(90, 10), (70, 30), (99, 1), (50, 50)])
def test_a_small_share_is_spread_out(big: int, small: int) -> None:
    split = SmoothWeighted(["a", "b"], [big, small])
    picks = "".join(split.pick() for _ in range(10 * (big + small)))
    longest_b_run = max(len(run) for run in picks.split("a"))
    assert longest_b_run == (1 if small <= big else small // big + 1)


def test_zero_weights_are_never_picked_and_all_zero_is_falsy() -> None:
    split = SmoothWeighted(["a", "b", "c"], [0, 3, 0])
    assert {split.pick() for _ in range(30)} == {"b"}
    assert not SmoothWeighted(["a"], [0])


def test_carry_position_continues_the_sequence_only_when_nothing_changed() -> None:
    first = SmoothWeighted(["a", "b"], [2, 1])
    reference = SmoothWeighted(["a", "b"], [2, 1])
    seen = [first.pick(), reference.pick()]
    again = SmoothWeighted(["a", "b"], [2, 1])
    again.carry_position(first)
    assert [again.pick() for _ in range(6)] == [reference.pick() for _ in range(6)]
    changed = SmoothWeighted(["a", "b"], [1, 1])
    changed.carry_position(first)  # other weights: starts afresh
    assert [changed.pick() for _ in range(2)] == ["a", "b"]
    assert seen == ["a", "a"]


def test_replicas_take_turns_and_exclude_is_honoured() -> None:
    pool = ReplicaPool(["r1", "r2", "r3"])
    assert [pool.pick() for _ in range(6)] == ["r1", "r2", "r3", "r1", "r2", "r3"]
    assert pool.pick(exclude=["r1"]) == "r2"
    assert pool.pick(exclude=["r1", "r2", "r3"]) is None
    assert ReplicaPool([]).pick() is None


def test_consecutive_failures_eject_then_the_replica_is_probed_back() -> None:
    clock = Clock()
    ejected: list[str] = []
    pool = ReplicaPool(["r1", "r2"], failure_threshold=3, eject_s=5, clock=clock, on_eject=ejected.append)
    pool.failed("r1")
    pool.failed("r1")
    pool.succeeded("r1")  # a success in between resets the count
    pool.failed("r1")
    pool.failed("r1")
    assert pool.ejected() == []
    pool.failed("r1")
    assert pool.ejected() == ["r1"]
    assert ejected == ["r1"]
    assert {pool.pick() for _ in range(10)} == {"r2"}
    clock.now += 5.01
    assert "r1" in {pool.pick() for _ in range(2)}  # time is up: it gets live traffic again
    pool.failed("r1")  # the probe failed: ejected again at once, for twice as long
    assert pool.ejected() == ["r1"]
    clock.now += 9.9
    assert pool.ejected() == ["r1"]
    clock.now += 0.2
    assert pool.ejected() == []
    pool.succeeded("r1")  # the probe succeeded: back to normal, the next ejection is short again
    for _ in range(3):
        pool.failed("r1")
    clock.now += 5.01
    assert pool.ejected() == []


def test_ejection_time_is_capped() -> None:
    clock = Clock()
    pool = ReplicaPool(["r1"], failure_threshold=1, eject_s=5, max_eject_s=12, clock=clock)
    durations = []
    for _ in range(5):
        pool.failed("r1")
        start = clock.now
        while pool.ejected():
            clock.now += 0.5
        durations.append(clock.now - start)
    assert durations == [5.0, 10.0, 12.0, 12.0, 12.0]


def test_when_every_replica_is_ejected_the_one_back_soonest_is_still_tried() -> None:
    clock = Clock()
    pool = ReplicaPool(["r1", "r2"], failure_threshold=1, eject_s=5, clock=clock)
    pool.failed("r1")
    clock.now += 1
    pool.failed("r2")
    assert pool.ejected() == ["r1", "r2"]
    assert pool.pick() == "r1"
    assert pool.pick(exclude=["r1"]) == "r2"


def test_carry_health_keeps_the_record_of_surviving_replicas() -> None:
    clock = Clock()
    old = ReplicaPool(["r1", "r2"], failure_threshold=1, clock=clock)
    old.failed("r1")
    new = ReplicaPool(["r1", "r3"], failure_threshold=1, clock=clock)
    new.carry_health(old)
    assert new.ejected() == ["r1"]
    assert list(itertools.islice((new.pick() for _ in itertools.count()), 3)) == ["r3", "r3", "r3"]


def test_attempts_in_flight_are_counted_per_replica_and_survive_a_reload() -> None:
    pool = ReplicaPool(["r1", "r2"])
    pool.sent("r1")
    pool.sent("r1")
    pool.sent("r2")
    pool.sent("gone")  # a replica dropped from the table meanwhile: ignored, not an error
    pool.returned("r2")
    assert pool.in_flight() == [("r1", 2), ("r2", 0)]
    new = ReplicaPool(["r1", "r3"])
    new.carry_health(pool)  # a new table keeps the replicas it still routes to, counts and all
    new.returned("r1")
    assert new.in_flight() == [("r1", 1), ("r3", 0)]
