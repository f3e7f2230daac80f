"""Races between real threads, each with its own Registry (own engine, own connections).

The database decides every race: one winner, and a Conflict for everybody else.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from modelyard.errors import Conflict
from modelyard.registry import ControlSettings, NewVersion, Registry

T = TypeVar("T")
RACERS = 6


@pytest.fixture
def clients(settings: ControlSettings) -> Iterator[list[Registry]]:
    opened = [Registry(settings) for _ in range(RACERS)]
    yield opened
    for registry in opened:
        registry.close()


def race(clients: list[Registry], action: Callable[[int, Registry], T]) -> list[T | Conflict]:
    """Run ``action`` on every client at once (a barrier lines them up); results in client order."""
    barrier = threading.Barrier(len(clients))

    def run(index: int) -> T | Conflict:
        barrier.wait(timeout=30)
        try:
            return action(index, clients[index])
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(run, range(len(clients))))


def test_one_winner_registers_an_explicit_version(clients: list[Registry]) -> None:
    digests = [client.upload([f"candidate {i}".encode()]).sha256 for i, client in enumerate(clients)]
    clients[0].create_model("iris")
    outcomes = race(clients, lambda i, c: c.register("iris", digests[i], NewVersion(version=5, user=f"u{i}")))
    winners = [o for o in outcomes if not isinstance(o, Conflict)]
    losers = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(winners) == 1
    assert len(losers) == RACERS - 1
    assert all("already has version 5" in loser.message for loser in losers)
    stored = clients[0].get_version("iris", 5)
    assert stored.sha256 == winners[0].sha256
    assert stored.user == winners[0].user
    assert [v.version for v in clients[0].list_versions("iris").items] == [5]


def test_racing_automatic_versions_all_get_distinct_numbers(clients: list[Registry]) -> None:
    digest = clients[0].upload([b"same model"]).sha256
    outcomes = race(clients, lambda i, c: c.register("iris", digest, NewVersion(user=f"u{i}")))
    numbers = sorted(o.version for o in outcomes if not isinstance(o, Conflict))
    assert numbers == list(range(1, RACERS + 1))


def test_one_winner_moves_an_alias_with_compare_and_set(clients: list[Registry]) -> None:
    first = clients[0]
    for index in range(RACERS + 1):
        first.register("iris", first.upload([f"v{index}".encode()]).sha256)
    seen = first.set_alias("iris", "production", 1)
    outcomes = race(
        clients,
        lambda i, c: c.set_alias("iris", "production", i + 2, user=f"u{i}", expected_revision=seen.revision),
    )
    winners = [o for o in outcomes if not isinstance(o, Conflict)]
    assert len(winners) == 1, outcomes
    assert sum(isinstance(o, Conflict) for o in outcomes) == RACERS - 1
    now = first.get_alias("iris", "production")
    assert (now.version, now.revision) == (winners[0].version, 2)
    history = first.alias_history("iris").items
    assert [(e.from_version, e.to_version) for e in history] == [(1, now.version), (None, 1)]


def test_one_winner_creates_a_new_alias(clients: list[Registry]) -> None:
    first = clients[0]
    for index in range(RACERS):
        first.register("iris", first.upload([f"v{index}".encode()]).sha256)
    outcomes = race(clients, lambda i, c: c.set_alias("iris", "canary", i + 1, expected_revision=0))
    assert sum(not isinstance(o, Conflict) for o in outcomes) == 1
    assert len(first.alias_history("iris").items) == 1


def test_unconditional_alias_moves_all_succeed_and_are_all_recorded(clients: list[Registry]) -> None:
    first = clients[0]
    for index in range(3):
        first.register("iris", first.upload([f"v{index}".encode()]).sha256)
    first.set_alias("iris", "production", 1)
    outcomes = race(clients, lambda i, c: c.set_alias("iris", "production", 2 + i % 2, user=f"u{i}"))
    assert not [o for o in outcomes if isinstance(o, Conflict)], outcomes
    now = first.get_alias("iris", "production")
    assert now.revision == RACERS + 1
    history = first.alias_history("iris", "production").items
    assert len(history) == RACERS + 1
    assert history[0].to_version == now.version
    # Each move starts where the previous one left the alias: the history is one unbroken chain.
    chain = list(reversed(history))
    assert all(later.from_version == earlier.to_version for earlier, later in itertools.pairwise(chain))


def test_unconditional_creations_of_a_new_alias_all_succeed(clients: list[Registry]) -> None:
    first = clients[0]
    first.register("iris", first.upload([b"v"]).sha256)
    outcomes = race(clients, lambda i, c: c.set_alias("iris", "beta", 1, user=f"u{i}"))
    assert not [o for o in outcomes if isinstance(o, Conflict)], outcomes
    assert first.get_alias("iris", "beta").revision == RACERS
    assert len(first.alias_history("iris", "beta").items) == RACERS


def test_registrations_with_aliases_never_fail_after_creating_the_version(clients: list[Registry]) -> None:
    first = clients[0]
    digest = first.upload([b"same model"]).sha256
    first.register("iris", digest, aliases=["production"])
    outcomes = race(clients, lambda i, c: c.register("iris", digest, aliases=["staging", "production"]))
    assert not [o for o in outcomes if isinstance(o, Conflict)], outcomes
    versions = sorted(v.version for v in first.list_versions("iris").items)
    assert versions == list(range(1, RACERS + 2))
    assert first.get_alias("iris", "production").revision == RACERS + 1
    assert first.get_alias("iris", "staging").revision == RACERS


def test_racing_first_registrations_of_a_new_model_all_succeed(clients: list[Registry]) -> None:
    digest = clients[0].upload([b"new"]).sha256
    outcomes = race(clients, lambda i, c: c.register("fresh", digest, aliases=["canary"]))
    assert not [o for o in outcomes if isinstance(o, Conflict)], outcomes
    assert clients[0].get_model("fresh").latest_version == RACERS
