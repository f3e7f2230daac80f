"""The adaptive batcher: coalesce concurrent requests into calls of the predict hook.

Policy. One collector task per model. When the model is free it takes what is queued, up to
``max_batch_size`` rows; if that is less than a full batch it waits for more, but only until the
*oldest* queued item has waited ``max_latency_ms``. Under load the queue refills while a batch
runs, so the next batch is ready the moment the model frees up and nobody waits twice. With
``max_latency_ms=0`` (the default) nothing waits while the model is idle: the batcher is
work-conserving and the batch size follows the load by itself — what arrived during one batch is
the next — with nothing to tune per host or model.

Guarantees:
- bounded queue: ``submit`` raises :class:`Overloaded` when ``max_queue`` items are waiting;
- deadlines: an item whose deadline passes while queued fails with :class:`DeadlineExceeded` and
  never reaches the model;
- isolation: if a batch raises, it is split in halves and retried until the failing items are
  alone, so one bad item never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import DeadlineExceeded, ModelNotReady, Overloaded
from modelyard.sdk import BatchSpec

__all__ = ["BatchRunner", "Batcher", "Pending", "checked", "settle"]

# Runs one batch: items in, one result per item out (an exception instance marks a failed item).
BatchRunner = Callable[[list[Any]], Awaitable[Sequence[Any]]]


@dataclass(eq=False, repr=False)
class Pending:
    """One queued item: what the caller awaits, and its deadline's timer.

    Compared by identity and shown without its item: ``deque.remove`` of one no longer queued
    puts ``repr(pending)`` in its error, and printing a request's arrays there, under the queue's
    lock, held the event loop and the model thread for a few ms per cancelled request (hundreds
    of ms when a load generator closed its connections at once).
    """

    item: Any
    rows: int
    future: asyncio.Future[Any]
    enqueued: float
    timer: asyncio.TimerHandle | None = field(default=None)


def settle(pending: Pending, result: Any) -> None:
    """Answer a caller (an exception instance fails it); on the event loop's thread only."""
    if pending.timer is not None:
        pending.timer.cancel()
    if pending.future.done():  # expired or cancelled meanwhile
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)


def checked(results: Sequence[Any], items: int) -> Sequence[Any]:
    """``results`` when there is one per item; else one error for every item, naming both lengths."""
    if len(results) == items:
        return results
    error = RuntimeError(f"the predict hook got {items} items but returned {len(results)} results")
    return [error] * items


class Batcher:
    """Queue, collect and dispatch items for one model.

    Args:
        name: the model name, for error messages.
        run: the batch runner; it must return one result (or exception) per item.
        spec: batching limits; ``max_batch_size=1, max_latency_ms=0`` gives plain dispatch.
        max_queue: the most items waiting before ``submit`` refuses with :class:`Overloaded`.
        concurrency: how many batches may run at once.
        on_batch: called with each executed batch's row count (metrics).
    """

    def __init__(
        self,
        name: str,
        run: BatchRunner,
        spec: BatchSpec,
        *,
        max_queue: int = 1024,
        concurrency: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self.spec = spec
        self.max_queue = max_queue
        self._concurrency = concurrency
        self._on_batch = on_batch
        self._queue: deque[Pending] = deque()
        self._rows_queued = 0
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def depth(self) -> int:
        """Items waiting in the queue (not counting those running)."""
        return len(self._queue)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._collect()) for _ in range(self._concurrency)]

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking new items, fail what is still queued, and wait for running batches.

        A batch still running after ``timeout_s`` (None: no limit) is cancelled and its callers
        fail with :class:`ModelNotReady`; no caller is ever left waiting.
        """
        self._closing = True
        while self._queue:
            pending = self._queue.popleft()
            settle(pending, ModelNotReady(self.name, "unloading"))
        self._rows_queued = 0
        self._wakeup.set()
        # Workers see _closing and exit once their running batch (if any) has settled its callers.
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def submit(self, item: Any, rows: int = 1, timeout_s: float | None = None) -> Any:
        """Queue one item and wait for its result; raises what the item failed with."""
        if self._closing:
            raise ModelNotReady(self.name, "unloading")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(self.name, len(self._queue), retry_after=self._retry_after())
        loop = asyncio.get_running_loop()
        pending = Pending(item, rows, loop.create_future(), time.monotonic())
        if timeout_s is not None:
            pending.timer = loop.call_later(timeout_s, self._expire, pending, timeout_s)
        self._queue.append(pending)
        self._rows_queued += rows
        self._wakeup.set()
        try:
            return await pending.future
        except asyncio.CancelledError:  # the caller went away (client disconnect): free its place
            self._forget(pending)
            raise

    def _retry_after(self) -> float:
        # A full queue drains in about (queue / batch size) batch times; 1 s is a fair floor.
        return 1.0

    def _expire(self, pending: Pending, timeout_s: float) -> None:
        if pending.future.done():
            return
        pending.future.set_exception(DeadlineExceeded(self.name, timeout_s))
        self._forget(pending)

    def _forget(self, pending: Pending) -> None:
        """Take an answered item out of the queue, so it counts toward neither depth nor max_queue.

        O(queue), but only for expired or cancelled items; one already taken into a batch is not
        in the queue any more, hence the ValueError guard.
        """
        if pending.timer is not None:
            pending.timer.cancel()
        with contextlib.suppress(ValueError):
            self._queue.remove(pending)
            self._rows_queued -= pending.rows

    async def _collect(self) -> None:
        while not self._closing:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_batch_mates()
            batch = self._take()
            if batch:
                await self._dispatch(batch)

    async def _wait_for_batch_mates(self) -> None:
        max_wait = self.spec.max_latency_ms / 1000.0
        while self._queue and self._rows_queued < self.spec.max_batch_size:
            remaining = self._queue[0].enqueued + max_wait - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _take(self) -> list[Pending]:
        batch: list[Pending] = []
        rows = 0
        limit = self.spec.max_batch_size
        while self._queue:
            head = self._queue[0]
            # An oversized single item still runs, alone; otherwise never exceed the limit.
            if batch and rows + head.rows > limit:
                break
            self._queue.popleft()
            self._rows_queued -= head.rows
            if head.future.done():  # expired or cancelled while queued
                continue
            batch.append(head)
            rows += head.rows
        return batch

    async def _dispatch(self, batch: list[Pending]) -> None:
        started = time.monotonic()
        try:
            results = await self._run_isolating([p.item for p in batch])
        except asyncio.CancelledError:  # the loop is going away: never leave a caller hanging
            for pending in batch:
                settle(pending, ModelNotReady(self.name, "unloading"))
            raise
        if self._on_batch is not None:
            self._on_batch(sum(p.rows for p in batch), time.monotonic() - started)
        for pending, result in zip(batch, results, strict=True):
            settle(pending, result)

    async def _run_isolating(self, items: list[Any]) -> Sequence[Any]:
        """Run ``items``; if the batch as a whole raises, bisect so the failure stays with its cause."""
        try:
            results = await self._run(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            mid = len(items) // 2
            return [*await self._run_isolating(items[:mid]), *await self._run_isolating(items[mid:])]
        return checked(results, len(items))
