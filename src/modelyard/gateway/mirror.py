"""Mirroring: copies of requests sent to shadow versions, off the request path and bounded.

The gateway hands a copy over only after the primary answer was sent. Copies wait in a bounded
queue served by a fixed number of tasks; when the queue is full the copy is dropped and counted,
so a slow or dead mirror can never make the gateway spawn unbounded work or delay a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MirrorQueue"]

log = logging.getLogger("modelyard.gateway")


class MirrorQueue:
    """``offer(job)`` queues a copy without waiting; ``concurrency`` tasks run the jobs."""

    def __init__(self, run: Callable[[Any], Awaitable[None]], *, capacity: int, concurrency: int) -> None:
        self._run = run
        self._queue: asyncio.Queue[object] = asyncio.Queue(capacity)
        self._concurrency = concurrency
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._serve()) for _ in range(self._concurrency)]

    def offer(self, job: object) -> bool:
        """Queue a copy; False (the caller counts a drop) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    async def _serve(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._run(job)
            except Exception:  # a mirror's failure is counted by the job; never let it kill the task
                log.exception("mirrored request failed")
            finally:
                self._queue.task_done()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Let queued copies finish for up to ``timeout_s``, then cancel the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
