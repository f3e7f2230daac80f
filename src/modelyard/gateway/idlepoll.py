"""Idle polling: a lightly loaded worker keeps its loop turning briefly before it goes to sleep.

With one request at a time (a single client, a quiet hour), every hop through the gateway is a
ping-pong: the worker writes to the replica and sleeps until the answer, writes the answer and
sleeps until the caller's next request. Each sleep ends with a wake-up, and on a virtual machine
waking a vCPU that halted is dear: an interrupt between processors and an exit to the
hypervisor. Measured on the project's machines (docs/performance.md), where the kernel's own
cure for this — polling before halting (``cpuidle-haltpoll``) — is configured off, that cost about
30 µs per leg, most of what the gateway added at one connection.

So after a write while at most one request is in flight (the write batcher knows: it holds writes
only when several are), the worker polls its sockets, without blocking, for a while before it
lets the loop sleep: the answer or the next request usually arrives within it and is picked up
without a wake-up. Each round yields the CPU first, so a process waiting for it runs. Under load
nothing changes (writes are held, nothing is kicked); with no traffic nothing runs.

How long to poll adapts, as the kernel's haltpoll does, separately for the two things a worker
waits for (:data:`REPLY` from a replica, :data:`NEXT_REQUEST` from a caller): the next kick ends
the wait that the previous one started, and that wait's length decides. Longer than the window
but within ``max_s``: polling a little longer would have caught it, so the window doubles. Longer
than ``max_s``: polling was wasted, so it halves, down to zero. Sparse callers and slow models thus
cost no polling after a few requests, while a busy single connection polls on both legs.
"""

from __future__ import annotations

import asyncio
import os
import time

__all__ = ["NEXT_REQUEST", "REPLY", "IdlePoller"]

REPLY = 0  # a request went to a replica: its answer comes next
NEXT_REQUEST = 1  # an answer went to a caller: its next request may come next
GROW_START_S = 25e-6  # a window that grows from zero starts here; one that shrinks below it stops


class IdlePoller:
    """``kick(leg)`` after a write; the loop then polls until that leg's window passed quietly."""

    __slots__ = ("_last_kick", "_last_leg", "_loop", "_until", "active", "max_s", "rounds", "windows")

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.windows = [max_s, max_s]  # per leg, in seconds; start generous, adapt from there
        self.active = False  # a polling round is scheduled
        self.rounds = 0  # polling rounds run so far (the service exports them as a counter)
        self._until = 0.0
        self._last_leg = -1  # the leg whose wait the next kick ends (-1: none yet)
        self._last_kick = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def kick(self, leg: int) -> None:
        """A write that starts a wait on ``leg`` (:data:`REPLY` or :data:`NEXT_REQUEST`) just went out."""
        if self.max_s <= 0.0:
            return
        now = time.perf_counter()
        if self._last_leg >= 0:
            self._adapt(self._last_leg, now - self._last_kick)
        self._last_leg, self._last_kick = leg, now
        window = self.windows[leg]
        self._until = now + window  # the wait that polling was for has ended: this one counts now
        if window > 0.0 and not self.active:
            try:  # looked up each time polling starts: a service may outlive one loop (tests do)
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a write from outside any loop: nothing to keep turning
                return
            self.active, self._loop = True, loop
            # A ready callback makes the loop poll its sockets with a zero timeout instead of
            # sleeping; callbacks scheduled while the ready ones run wait for the next round.
            loop.call_soon(self._round)

    def _adapt(self, leg: int, waited: float) -> None:
        window = self.windows[leg]
        if waited > self.max_s:  # nothing came for longer than polling may last: stop wasting it
            half = window / 2
            self.windows[leg] = half if half >= GROW_START_S else 0.0
        elif waited > window:  # it came soon after polling gave up: poll longer next time
            self.windows[leg] = min(self.max_s, max(window * 2, GROW_START_S))

    def _round(self) -> None:
        if time.perf_counter() >= self._until:
            self.active = False  # quiet for a whole window: let the loop sleep
            return
        self.rounds += 1
        os.sched_yield()  # a peer waiting for this CPU (the replica, the client) goes first
        assert self._loop is not None
        self._loop.call_soon(self._round)
