"""Inference logs: one record schema for every request, shipped to a sink through a bounded buffer.

The request path only ever calls :meth:`LogShipper.submit`, which never blocks: the record goes
into a bounded in-memory buffer, and a background task hands batches of records to the sink. When
the sink is down or slow and the buffer is full, new records are dropped and counted — the request
path never waits for logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque

from modelyard._process import Backoff
from modelyard.gateway.logs.record import Count, InferenceLog, LogSink

logger = logging.getLogger(__name__)

# start() waits this long for the sink's first connection before carrying on without it; the
# sinks' own connect timeouts are shorter, this only guards against a sink that ignores them.
OPEN_TIMEOUT_S = 5.0
# At most one "the sink is failing" warning per this many seconds per shipper: an outage of an hour
# must not write 36 000 warnings (one per back-off step), but must still be visible.
WARN_INTERVAL_S = 30.0


class _Throttled:
    """Log warnings at most once per ``interval_s``, saying how many were held back in between."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = -math.inf
        self._suppressed = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar warnings suppressed)"
        logger.warning(message)
        self._last = now
        self._suppressed = 0


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` passes, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


class LogShipper:
    """Moves inference logs from the request path to a :class:`LogSink` without ever making a
    request wait.

    :meth:`submit` appends to a bounded in-memory buffer; one background task drains it in batches
    of up to ``batch_size`` (a record waits at most about ``flush_interval_s`` for batch-mates).
    When the buffer holds ``capacity`` records, new ones are dropped and counted. A batch the sink
    fails to take is lost and counted, and the task backs off (``retry_initial_s`` doubling up to
    ``retry_max_s``) so a down sink costs at most the buffer, never memory or CPU.

    The outcome counters ``shipped``, ``failed``, ``dropped`` and ``open_failures`` are kept as
    plain ints, and reported through ``count(outcome, n)`` when given.
    """

    def __init__(
        self,
        sink: LogSink,
        *,
        capacity: int = 10_000,
        batch_size: int = 8192,
        flush_interval_s: float = 0.5,
        count: Count | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
        write_timeout_s: float = 30.0,
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be at least 1")
        if min(flush_interval_s, retry_initial_s, write_timeout_s) <= 0 or retry_max_s < retry_initial_s:
            raise ValueError("intervals must be positive and retry_max_s >= retry_initial_s")
        self.sink = sink
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.write_timeout_s = write_timeout_s
        self.shipped = 0
        self.failed = 0
        self.dropped = 0
        self.open_failures = 0
        self._count = count
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._buffer: deque[InferenceLog] = deque()
        self._wake = asyncio.Event()  # a full batch is waiting, or stop() was called
        self._stopping = asyncio.Event()
        self._closed = False  # after stop(): submit() refuses
        self._opened = False
        self._failing = False  # the last batch failed: log when the sink recovers
        self._task: asyncio.Task[None] | None = None
        self._warn = _Throttled(WARN_INTERVAL_S)

    @property
    def pending(self) -> int:
        """Records waiting in the buffer."""
        return len(self._buffer)

    def submit(self, record: InferenceLog) -> bool:
        """Queue ``record`` for shipping; False (and counted as dropped) when the buffer is full.

        Synchronous and O(1): it never waits and never raises, whatever state the sink is in. Call
        it from the event loop's thread (it may wake the background task).
        """
        try:
            if self._closed or len(self._buffer) >= self.capacity:
                self._add("dropped", 1)
                return False
            self._buffer.append(record)
            if len(self._buffer) == self.batch_size:
                self._wake.set()  # a full batch need not wait for the flush interval
            return True
        except Exception:  # logging must never fail a request
            logger.debug("inference log submit failed", exc_info=True)
            return False

    async def start(self) -> None:
        """Open the sink and start shipping.

        A sink that cannot be opened does not fail start-up: the failure is logged and counted
        (``open_failed``), records are buffered, and the background task keeps trying to open it.
        """
        if self._task is not None:
            raise RuntimeError("LogShipper.start() called twice")
        self._opened = await self._try_open()
        self._task = asyncio.create_task(self._run(), name=f"log-shipper-{self.sink.name}")
        self._task.add_done_callback(_log_crash)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Ship what is buffered (for at most ``timeout_s``), then close the sink.

        Records still buffered when the time is up, or when the sink fails during the final flush,
        are counted as dropped.
        """
        deadline = time.monotonic() + timeout_s
        task = self._task
        if task is not None and not task.done():
            self._stopping.set()
            self._wake.set()
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                task.cancel()  # the batch in flight is counted as dropped by _ship
                await asyncio.wait({task})
                logger.warning("log sink %s: final flush timed out after %s s", self.sink.name, timeout_s)
        self._closed = True
        self._drop_leftovers()
        if self._opened:
            self._opened = False
            await self._close_sink(max(deadline - time.monotonic(), 1.0))

    def _add(self, outcome: str, n: int) -> None:
        if outcome == "shipped":
            self.shipped += n
        elif outcome == "failed":
            self.failed += n
        elif outcome == "dropped":
            self.dropped += n
        else:
            self.open_failures += n
        if self._count is not None:
            try:
                self._count(outcome, n)
            except Exception:  # a broken metrics hook must not break shipping
                logger.debug("inference log count hook failed", exc_info=True)

    async def _try_open(self) -> bool:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await self.sink.open()
        except Exception as exc:
            self._add("open_failed", 1)
            self._warn.warning(
                f"log sink {self.sink.name} could not be opened ({exc!r}); retrying in the "
                f"background, buffering at most {self.capacity} records meanwhile"
            )
            return False
        return True

    async def _run(self) -> None:
        while not self._opened:
            if self._stopping.is_set():
                return
            await _wait(self._stopping, self._backoff.next())
            self._opened = await self._try_open()
        self._backoff.reset()
        while True:
            if len(self._buffer) < self.batch_size and not self._stopping.is_set():
                # Gather for up to flush_interval_s unless a full batch is waiting. Shipping again
                # as soon as a write returned made, under load, a batch of the few records that
                # arrived meanwhile: hundreds of batches and thread hand-offs a second instead of
                # the documented one per interval (its cost in CPU: docs/performance.md).
                self._wake.clear()  # no await since the size check: no wake-up is missed
                await _wait(self._wake, self.flush_interval_s)
            batch = self._take()
            if batch:
                if await self._ship(batch):
                    self._backoff.reset()
                elif self._stopping.is_set():
                    return  # the sink is failing: don't spend stop()'s time budget retrying
                else:
                    await _wait(self._stopping, self._backoff.next())
            elif self._stopping.is_set():
                return

    def _take(self) -> list[InferenceLog]:
        buffer = self._buffer
        return [buffer.popleft() for _ in range(min(self.batch_size, len(buffer)))]

    async def _ship(self, batch: list[InferenceLog]) -> bool:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.sink.write(batch)
        except asyncio.CancelledError:
            self._add("dropped", len(batch))
            raise
        except Exception as exc:
            self._add("failed", len(batch))
            self._failing = True
            self._warn.warning(
                f"log sink {self.sink.name} failed to take {len(batch)} records ({exc!r}); they are "
                f"lost, {len(self._buffer)} more are buffered (capacity {self.capacity})"
            )
            return False
        self._add("shipped", len(batch))
        if self._failing:
            self._failing = False
            logger.info("log sink %s recovered", self.sink.name)
        return True

    def _drop_leftovers(self) -> None:
        if self._buffer:
            lost = len(self._buffer)
            self._buffer.clear()
            self._add("dropped", lost)
            logger.warning("log sink %s: %d buffered records dropped at shutdown", self.sink.name, lost)

    async def _close_sink(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.sink.close()
        except Exception as exc:
            logger.warning("log sink %s did not close cleanly: %r", self.sink.name, exc)


def _log_crash(task: asyncio.Task[None]) -> None:
    """A shipper whose task died would silently drop every record from then on: say so loudly."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("inference log shipper crashed", exc_info=task.exception())
