"""WriteBatcher: writes held to the end of the loop's turn keep their order, closes come after
the writes queued before them, and nothing is held when holding is off."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.gateway.writes import WriteBatcher
from tests.gateway.support import RecordingTransport as Transport

pytestmark = pytest.mark.anyio


async def test_held_writes_go_out_together_at_the_end_of_the_turn_in_order() -> None:
    log: list[tuple[str, str]] = []
    a, b = Transport("a", log), Transport("b", log)
    batcher = WriteBatcher()
    batcher.write(a, b"1")
    batcher.write(b, b"2")
    batcher.write(a, b"3")
    batcher.close(a)
    assert log == []  # nothing before the loop's turn ends
    await asyncio.sleep(0)
    assert log == [("a", "1"), ("b", "2"), ("a", "3"), ("a", "<close>")]


async def test_a_write_queued_for_a_closing_transport_is_dropped_and_a_broken_one_spares_the_rest() -> None:
    log: list[tuple[str, str]] = []
    closing, broken, fine = (
        Transport("closing", log),
        Transport("broken", log, broken=True),
        Transport("ok", log),
    )
    closing.closing = True
    batcher = WriteBatcher()
    for transport in (closing, broken, fine):
        batcher.write(transport, b"x")
    batcher.flush()
    assert log == [("ok", "x")]


async def test_without_hold_writes_go_out_at_once_unless_something_is_queued_ahead() -> None:
    log: list[tuple[str, str]] = []
    a = Transport("a", log)
    batcher = WriteBatcher(hold=False)
    batcher.write(a, b"now")
    assert log == [("a", "now")]  # at once: nothing to coalesce with

    batcher.hold = True
    batcher.write(a, b"held")
    batcher.hold = False
    batcher.write(a, b"after")  # must not overtake "held"
    batcher.close(a)
    assert log == [("a", "now")]
    await asyncio.sleep(0)
    assert log == [("a", "now"), ("a", "held"), ("a", "after"), ("a", "<close>")]

    batcher.close(a)  # nothing queued and not holding: closed at once
    assert log[4:] == [("a", "<close>")]


async def test_without_hold_a_write_to_a_closing_transport_is_dropped_not_raised() -> None:
    log: list[tuple[str, str]] = []
    gone = Transport("gone", log, broken=True)
    gone.closing = True  # the peer closed; the protocol has not heard yet
    WriteBatcher(hold=False).write(gone, b"late answer")  # must not raise
    assert log == []
