"""The batcher for a synchronous predict hook: its collector runs in the model's own thread.

:class:`~modelyard.server.batcher.Batcher` collects on the event loop and hands each batch to a
worker thread. Under load that costs the model its time: a batch that finishes is reported back
through the loop's queue of callbacks, and the next batch starts only when the loop, busy parsing
requests and writing answers, gets to it — milliseconds on a busy 2-core host, during which the
model idles although its next batch is queued. Here the model's thread takes its next batch from
the queue itself the moment the previous one returns; the loop only enqueues items and receives
answers (one callback per batch).

Same policy and guarantees as ``Batcher``: up to ``max_batch_size`` rows, a window of
``max_latency_ms`` counted from the oldest queued item when the batch is not full (0: none, a
request that finds the model idle goes at once), a bounded queue (:class:`Overloaded`), deadlines
(an item whose deadline passes while queued never reaches the model), and failure isolation (a
batch that raises is bisected until the failing items are alone). ``threads`` > 1 runs that many
batches at once (plain dispatch of an unbatched model: ``max_batch_size=1``, several threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.errors import DeadlineExceeded, ModelNotReady, Overloaded
from modelyard.sdk import BatchSpec
from modelyard.server.batcher import Pending, checked, settle

__all__ = ["SyncRunner", "ThreadBatcher"]

# Runs one batch in the model's thread: items in, one result per item out (an exception instance
# marks a failed item).
SyncRunner = Callable[[list[Any]], Sequence[Any]]


class ThreadBatcher:
    """Queue items on the event loop; collect and run batches in the model's own thread(s).

    Args:
        name: the model name, for error messages and thread names.
        run: the batch runner, called in a model thread.
        spec: batching limits.
        max_queue: the most items waiting before ``submit`` refuses with :class:`Overloaded`.
        threads: how many batches may run at once.
        on_batch: called (in a model thread) with each batch's rows and seconds (metrics).
    """

    def __init__(
        self,
        name: str,
        run: SyncRunner,
        spec: BatchSpec,
        *,
        max_queue: int = 1024,
        threads: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.max_queue = max_queue
        self._run = run
        self._threads_wanted = max(1, threads)
        self._on_batch = on_batch
        self._queue: deque[Pending] = deque()
        self._rows_queued = 0
        self._ready = threading.Condition()  # guards the queue; notified when items arrive
        self._running: dict[int, list[Pending]] = {}  # thread id -> its batch (for stop's timeout)
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Items waiting in the queue (not counting those running)."""
        return len(self._queue)

    def start(self) -> None:
        """Start the model thread(s); call on the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._work, name=f"model-{self.name}-{i}", daemon=True)
            for i in range(self._threads_wanted)
        ]
        for thread in self._threads:
            thread.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking items, fail what is still queued, and wait for running batches.

        A batch still running after ``timeout_s`` (None: no limit) cannot be interrupted (it is
        native code in a thread), but its callers fail at once with :class:`ModelNotReady`.
        """
        with self._ready:
            self._closing = True
            queued, self._rows_queued = list(self._queue), 0
            self._queue.clear()
            self._ready.notify_all()
        for pending in queued:
            settle(pending, ModelNotReady(self.name, "unloading"))
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await loop.run_in_executor(None, thread.join, left)
        for batch in list(self._running.values()):  # past the timeout: still running
            for pending in batch:
                settle(pending, ModelNotReady(self.name, "unloading"))
        self._threads = []

    async def submit(self, item: Any, rows: int = 1, timeout_s: float | None = None) -> Any:
        """Queue one item and wait for its result; raises what the item failed with."""
        loop = asyncio.get_running_loop()
        pending = Pending(item, rows, loop.create_future(), time.monotonic())
        with self._ready:
            if self._closing:
                raise ModelNotReady(self.name, "unloading")
            if len(self._queue) >= self.max_queue:
                raise Overloaded(self.name, len(self._queue), retry_after=1.0)
            self._queue.append(pending)
            self._rows_queued += rows
            self._ready.notify()
        if timeout_s is not None:
            pending.timer = loop.call_later(timeout_s, self._expire, pending, timeout_s)
        try:
            return await pending.future
        except asyncio.CancelledError:  # the caller went away (client disconnect): free its place
            self._forget(pending)
            raise

    def _expire(self, pending: Pending, timeout_s: float) -> None:
        if not pending.future.done():
            pending.future.set_exception(DeadlineExceeded(self.name, timeout_s))
            self._forget(pending)

    def _forget(self, pending: Pending) -> None:
        """Take an answered item out of the queue (if a model thread has not taken it already)."""
        if pending.timer is not None:
            pending.timer.cancel()
        with self._ready:
            try:
                self._queue.remove(pending)
            except ValueError:
                return
            self._rows_queued -= pending.rows

    # -- in the model thread(s) -----------------------------------------------------------------

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            with self._ready:
                batch = self._next_batch()
                if batch is None:
                    return
                self._running[me] = batch
            try:
                self._run_batch(batch)
            finally:
                with self._ready:
                    self._running.pop(me, None)

    def _next_batch(self) -> list[Pending] | None:
        """Wait (holding the condition) for items and, if the batch is not full, for the window;
        take the batch. None once stopping."""
        while not self._queue:
            if self._closing:
                return None
            self._ready.wait()
        max_wait = self.spec.max_latency_ms / 1000.0
        while self._queue and self._rows_queued < self.spec.max_batch_size and not self._closing:
            remaining = self._queue[0].enqueued + max_wait - time.monotonic()
            if remaining <= 0:
                break
            self._ready.wait(remaining)
        return self._take()

    def _take(self) -> list[Pending]:
        batch: list[Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if batch and rows + head.rows > self.spec.max_batch_size:  # an oversized one runs alone
                break
            self._queue.popleft()
            self._rows_queued -= head.rows
            if head.future.done():  # expired or cancelled while queued (a benign racy read: an
                continue  # item answered meanwhile is run, and its result dropped by settle)
            batch.append(head)
            rows += head.rows
        return batch

    def _run_batch(self, batch: list[Pending]) -> None:
        if not batch:
            return
        started = time.monotonic()
        results = self._isolating([pending.item for pending in batch])
        if self._on_batch is not None:
            self._on_batch(sum(pending.rows for pending in batch), time.monotonic() - started)
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle_all, batch, results)

    def _isolating(self, items: list[Any]) -> Sequence[Any]:
        """Run ``items``; if the batch as a whole raises, bisect so the failure stays with its cause."""
        try:
            results = self._run(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            mid = len(items) // 2
            return [*self._isolating(items[:mid]), *self._isolating(items[mid:])]
        return checked(results, len(items))


def _settle_all(batch: list[Pending], results: Sequence[Any]) -> None:
    for pending, result in zip(batch, results, strict=True):
        settle(pending, result)
