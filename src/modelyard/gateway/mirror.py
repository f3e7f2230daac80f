"""Mirroring: copies of requests sent to shadow versions, off the request path and bounded.

The gateway hands a copy over only after the primary answer was sent. At most ``concurrency``
copies are in flight per worker and at most ``capacity`` wait; when both are full the copy is
dropped (the caller counts it), so a slow or dead mirror can never make the gateway spawn
unbounded work or delay a caller. No task per copy: a finished copy starts the next waiting one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["MirrorQueue"]

log = logging.getLogger("modelyard.gateway")

# send(job, finished): start one copy; it must call finished() exactly once when it is over.
Send = Callable[[Any, Callable[[], None]], None]


class MirrorQueue:
    """``offer(job)`` starts or queues a copy without waiting; False when it had to be dropped."""

    def __init__(self, send: Send, *, capacity: int, concurrency: int) -> None:
        self._send = send
        self._waiting: collections.deque[Any] = collections.deque()
        self._capacity = capacity
        self._concurrency = concurrency
        self.in_flight = 0
        self._idle: asyncio.Event | None = None  # made by stop(), set once nothing is left

    def offer(self, job: Any) -> bool:
        if self.in_flight < self._concurrency:
            self._run(job)
            return True
        if len(self._waiting) >= self._capacity:
            return False
        self._waiting.append(job)
        return True

    def _run(self, job: Any) -> None:
        self.in_flight += 1
        finished = _Once(self._finished)
        try:
            self._send(job, finished)
        except Exception:  # a mirror's failure must never reach the caller's request path
            log.exception("mirrored request failed to start")
            finished()

    def _finished(self) -> None:
        self.in_flight -= 1
        if self._waiting and self.in_flight < self._concurrency:
            # Reserve the slot now, start on the next loop turn: a copy that fails at once must not
            # start the next one inside its own call stack (a long queue would recurse that deep).
            self.in_flight += 1
            asyncio.get_running_loop().call_soon(self._start_next)
        self._check_idle()

    def _start_next(self) -> None:
        self.in_flight -= 1
        if self._waiting:
            self._run(self._waiting.popleft())
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle is not None and not self.in_flight and not self._waiting:
            self._idle.set()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Let copies in flight and waiting finish for up to ``timeout_s``, then forget the rest."""
        self._idle = asyncio.Event()
        self._check_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        self._waiting.clear()


class _Once:
    __slots__ = ("_callback", "_called")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._called = False

    def __call__(self) -> None:
        if not self._called:
            self._called = True
            self._callback()
