"""IdlePoller: after a kick the loop keeps turning for the window and then stops; kicks while it
polls extend the window without a second chain; each leg's window halves after waits longer than
the limit and doubles after waits just beyond it; the write batcher kicks only unheld writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from modelyard.gateway.idlepoll import GROW_START_S, NEXT_REQUEST, REPLY, IdlePoller
from modelyard.gateway.service import GatewayService
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.writes import WriteBatcher
from modelyard.routing.table import RoutingTable
from tests.gateway.support import RecordingTransport

pytestmark = pytest.mark.anyio


async def wait_until_idle(poller: IdlePoller, limit_s: float = 2.0) -> float:
    """Seconds until the poller stopped on its own (sleep(0) gives the loop turns, not sleeps)."""
    started = time.perf_counter()
    while poller.active:
        assert time.perf_counter() - started < limit_s, "the poller never stopped"
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def test_a_kick_keeps_the_loop_polling_for_the_window_then_it_stops() -> None:
    poller = IdlePoller(0.02)
    poller.kick(NEXT_REQUEST)
    assert poller.active
    took = await wait_until_idle(poller)
    assert 0.015 <= took < 1.0
    assert poller.rounds > 10  # it turned the loop many times, not once
    rounds = poller.rounds
    await asyncio.sleep(0.03)
    assert poller.rounds == rounds  # and nothing runs once it stopped


async def test_the_loop_can_sleep_while_it_polls() -> None:
    """A timer due inside the window fires on time: polling never blocks the loop."""
    poller = IdlePoller(0.05)
    poller.kick(NEXT_REQUEST)
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    assert time.perf_counter() - started < 0.04
    assert poller.active


async def test_kicks_while_polling_extend_the_window_with_one_chain() -> None:
    poller = IdlePoller(0.02)
    poller.kick(NEXT_REQUEST)
    started = time.perf_counter()
    for _ in range(5):  # keep it busy for ≈50 ms, kicking every 10 ms
        await asyncio.sleep(0.01)
        poller.kick(NEXT_REQUEST)
    await wait_until_idle(poller)
    assert time.perf_counter() - started >= 0.065  # the last kick's window was honoured
    # One chain: rounds are one per loop turn, so two chains would have run about twice as many
    # rounds as there were turns. Count the turns of a bare loop over the same time to compare.
    turns, until = 0, time.perf_counter() + 0.02
    while time.perf_counter() < until:
        turns += 1
        await asyncio.sleep(0)
    assert poller.rounds < 6 * turns  # ≈70 ms of polling against 20 ms of bare turns


def test_a_kick_outside_an_event_loop_polls_nothing_and_does_not_raise() -> None:
    poller = IdlePoller(0.01)
    batcher = WriteBatcher(hold=False, poller=poller)
    log: list[tuple[str, str]] = []
    batcher.write(RecordingTransport("client", log), b"written from plain code")
    assert log == [("client", "written from plain code")]
    assert not poller.active


def test_a_poller_outlives_its_loop() -> None:
    """Kicked on one loop until idle, then on another: it polls there too (no stale loop kept)."""
    poller = IdlePoller(0.005)

    async def kick_and_wait() -> int:
        before = poller.rounds
        poller.kick(NEXT_REQUEST)
        await wait_until_idle(poller)
        return poller.rounds - before

    assert asyncio.run(kick_and_wait()) > 0
    assert asyncio.run(kick_and_wait()) > 0


async def test_a_window_of_zero_schedules_nothing() -> None:
    poller = IdlePoller(0.0)
    poller.kick(NEXT_REQUEST)
    assert not poller.active
    await asyncio.sleep(0.01)
    assert poller.rounds == 0


async def test_the_batcher_kicks_writes_that_go_out_at_once_but_not_held_ones() -> None:
    poller = IdlePoller(0.01)
    batcher = WriteBatcher(hold=True, poller=poller)
    log: list[tuple[str, str]] = []
    sink = RecordingTransport("client", log)
    batcher.write(sink, b"held")
    assert not poller.active  # several requests in flight: the loop has work, no polling
    await asyncio.sleep(0)
    assert log == [("client", "held")]
    batcher.hold = False
    batcher.write(sink, b"at once")
    assert log == [("client", "held"), ("client", "at once")]
    assert poller.active
    await wait_until_idle(poller)


class EmptySource:
    def revision(self) -> int:
        return 0

    def load(self) -> RoutingTable:
        return RoutingTable()


def test_a_legs_window_doubles_after_waits_just_beyond_it_and_halves_after_long_ones() -> None:
    poller = IdlePoller(0.004)
    poller.windows[REPLY] = 0.0
    grown = []
    for _ in range(10):
        poller._adapt(REPLY, 0.0039)  # each wait just within the limit, beyond the window
        grown.append(poller.windows[REPLY])
    assert grown[:3] == [
        pytest.approx(GROW_START_S),
        pytest.approx(2 * GROW_START_S),
        pytest.approx(4 * GROW_START_S),
    ]
    assert grown[-1] == pytest.approx(0.004)  # capped at the limit
    poller._adapt(REPLY, 0.001)  # caught by polling: kept
    assert poller.windows[REPLY] == pytest.approx(0.004)
    shrunk = []
    for _ in range(10):
        poller._adapt(REPLY, 0.005)  # longer than polling may last
        shrunk.append(poller.windows[REPLY])
    assert shrunk[:2] == [pytest.approx(0.002), pytest.approx(0.001)]
    assert shrunk[-1] == 0.0  # below the starting size: no polling at all
    assert poller.windows[NEXT_REQUEST] == pytest.approx(0.004)  # the other leg is its own


async def test_the_next_kick_ends_the_wait_the_previous_one_started() -> None:
    poller = IdlePoller(0.002)
    poller.kick(REPLY)
    time.sleep(0.005)  # noqa: ASYNC251  # a replica slower than polling may last; the loop must not turn
    poller.kick(NEXT_REQUEST)  # the answer came, and went to the caller
    assert poller.windows == [pytest.approx(0.001), pytest.approx(0.002)]
    poller.kick(REPLY)  # the caller's next request at once: its wait was caught
    assert poller.windows == [pytest.approx(0.001), pytest.approx(0.002)]
    await wait_until_idle(poller)


async def test_a_wait_caught_by_polling_leaves_the_window_as_it_is() -> None:
    poller = IdlePoller(0.05)
    poller.kick(REPLY)
    await asyncio.sleep(0.005)  # the answer came while polling
    poller.kick(NEXT_REQUEST)
    assert poller.windows == [0.05, 0.05]
    await wait_until_idle(poller)


@pytest.mark.parametrize(("setting", "window_s"), [(None, 200e-6), (0, 0.0), (1000, 1e-3)])
def test_the_service_polls_for_the_configured_window(setting: int | None, window_s: float) -> None:
    overrides = {} if setting is None else {"idle_poll_us": setting}
    settings = GatewaySettings(log_sink="none", **overrides)
    service = GatewayService(settings, EmptySource())
    assert service.idle_poller.max_s == pytest.approx(window_s)
    assert service.idle_poller.windows == [pytest.approx(window_s)] * 2


def test_a_negative_window_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="idle_poll_us"):
        GatewaySettings(idle_poll_us=-1)
