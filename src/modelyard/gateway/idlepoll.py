"""Idle polling: a lightly loaded worker keeps its loop turning briefly before it goes to sleep.

With one request at a time (a single client, a quiet hour), every hop through the gateway is a
ping-pong: the worker writes to the replica and sleeps until the answer, writes the answer and
sleeps until the caller's next request. Each sleep ends with a wake-up, and on a virtual machine
waking a vCPU that halted is dear: an interrupt between processors and an exit to the
hypervisor. Measured on the project's machines (docs/performance.md), where the kernel's own
cure for this — polling before halting (``cpuidle-haltpoll``) — is configured off, that cost about
30 µs per leg, which was most of what the gateway added at one connection.

So after a write while at most one request is in flight (the write batcher knows: it holds writes
only when several are), the worker polls its sockets, without blocking, for up to ``window_s``
before it lets the loop sleep: the answer or the next request usually arrives well within it and
is picked up without a wake-up. Each round yields the CPU first, so a process waiting for it runs.
Under load nothing changes (writes are held, nothing is kicked); with no traffic nothing runs; with
sparse traffic each request costs at most ``window_s`` of CPU. ``idle_poll_us = 0`` turns it off.
"""

from __future__ import annotations

import asyncio
import os
import time

__all__ = ["IdlePoller"]


class IdlePoller:
    """``kick()`` after activity; the loop then keeps polling until ``window_s`` passed without one."""

    __slots__ = ("_loop", "_until", "active", "rounds", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.active = False  # a polling round is scheduled
        self.rounds = 0  # polling rounds run so far (for tests and curiosity)
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def kick(self) -> None:
        """Poll (at least) ``window_s`` more from now; call from the loop's thread."""
        if self.window_s <= 0.0:
            return
        self._until = time.perf_counter() + self.window_s
        if not self.active:
            self.active = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            # A ready callback makes the loop poll its sockets with a zero timeout instead of
            # sleeping; callbacks scheduled while the ready ones run wait for the next round.
            self._loop.call_soon(self._round)

    def _round(self) -> None:
        if time.perf_counter() >= self._until:
            self.active = False  # quiet for a whole window: let the loop sleep
            return
        self.rounds += 1
        os.sched_yield()  # a peer waiting for this CPU (the replica, the client) goes first
        assert self._loop is not None
        self._loop.call_soon(self._round)
