"""IdlePoller: after a kick the loop keeps turning for the window and then stops; kicks while it
polls extend the window without a second chain; the write batcher kicks only unheld writes."""

from __future__ import annotations

import asyncio
import time

import pytest

from modelyard.gateway.batching import WriteBatcher
from modelyard.gateway.idlepoll import IdlePoller
from modelyard.gateway.service import GatewayService
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.table import RoutingTable

pytestmark = pytest.mark.anyio


class Sink:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False


async def wait_until_idle(poller: IdlePoller, limit_s: float = 2.0) -> float:
    """Seconds until the poller stopped on its own (sleep(0) gives the loop turns, not sleeps)."""
    started = time.perf_counter()
    while poller.active:
        assert time.perf_counter() - started < limit_s, "the poller never stopped"
        await asyncio.sleep(0)
    return time.perf_counter() - started


async def test_a_kick_keeps_the_loop_polling_for_the_window_then_it_stops() -> None:
    poller = IdlePoller(0.02)
    poller.kick()
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
    poller.kick()
    started = time.perf_counter()
    await asyncio.sleep(0.01)
    assert time.perf_counter() - started < 0.04
    assert poller.active


async def test_kicks_while_polling_extend_the_window_with_one_chain() -> None:
    poller = IdlePoller(0.02)
    poller.kick()
    started = time.perf_counter()
    for _ in range(5):  # keep it busy for ≈50 ms, kicking every 10 ms
        await asyncio.sleep(0.01)
        poller.kick()
    await wait_until_idle(poller)
    assert time.perf_counter() - started >= 0.065  # the last kick's window was honoured
    # One chain: rounds are one per loop turn, so two chains would have run about twice as many
    # rounds as there were turns. Count the turns of a bare loop over the same time to compare.
    turns, until = 0, time.perf_counter() + 0.02
    while time.perf_counter() < until:
        turns += 1
        await asyncio.sleep(0)
    assert poller.rounds < 6 * turns  # ≈70 ms of polling against 20 ms of bare turns


async def test_a_window_of_zero_schedules_nothing() -> None:
    poller = IdlePoller(0.0)
    poller.kick()
    assert not poller.active
    await asyncio.sleep(0.01)
    assert poller.rounds == 0


async def test_the_batcher_kicks_writes_that_go_out_at_once_but_not_held_ones() -> None:
    poller = IdlePoller(0.01)
    batcher = WriteBatcher(hold=True, poller=poller)
    sink = Sink()
    batcher.write(sink, b"held")
    assert not poller.active  # several requests in flight: the loop has work, no polling
    await asyncio.sleep(0)
    assert sink.written == [b"held"]
    batcher.hold = False
    batcher.write(sink, b"at once")
    assert sink.written == [b"held", b"at once"]
    assert poller.active
    await wait_until_idle(poller)


class EmptySource:
    def revision(self) -> int:
        return 0

    def load(self) -> RoutingTable:
        return RoutingTable()


@pytest.mark.parametrize(("setting", "window_s"), [(None, 200e-6), (0, 0.0), (1000, 1e-3)])
def test_the_service_polls_for_the_configured_window(setting: int | None, window_s: float) -> None:
    overrides = {} if setting is None else {"idle_poll_us": setting}
    settings = GatewaySettings(log_sink="none", **overrides)
    service = GatewayService(settings, EmptySource())
    assert service.poller.window_s == pytest.approx(window_s)


def test_a_negative_window_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="idle_poll_us"):
        GatewaySettings(idle_poll_us=-1)
