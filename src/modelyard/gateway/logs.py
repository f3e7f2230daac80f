"""Inference logs: one record schema for every request, shipped to a sink through a bounded buffer.

The request path only ever calls :meth:`LogShipper.submit`, which never blocks: the record goes
into a bounded in-memory buffer, and a background task hands batches of records to the sink. When
the sink is down or slow and the buffer is full, new records are dropped and counted — the request
path never waits for logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol
from urllib.parse import unquote, urlsplit

from modelyard.errors import InvalidInput
from modelyard.gateway.sinks import NatsJetStreamSink, RedisStreamSink, encode_lines

__all__ = [
    "ENCODE_SLICE",
    "Count",
    "DiscardSink",
    "InferenceLog",
    "JsonLinesSink",
    "LogShipper",
    "LogSink",
    "Role",
    "open_sink",
]

logger = logging.getLogger(__name__)

Count = Callable[[str, int], None]
"""A metric hook: ``count(outcome, n)`` with outcome ``shipped``, ``failed``, ``dropped`` or
``open_failed`` (a Prometheus counter labelled by outcome, typically)."""

# start() waits this long for the sink's first connection before carrying on without it; the
# sinks' own connect timeouts are shorter, this only guards against a sink that ignores them.
OPEN_TIMEOUT_S = 5.0
# At most one "the sink is failing" warning per this many seconds per shipper: an outage of an hour
# must not write 36 000 warnings (one per back-off step), but must still be visible.
WARN_INTERVAL_S = 30.0

Role = Literal["primary", "mirror"]
ENCODE_SLICE = 512  # records encoded between two chances for the event loop to serve requests


@dataclasses.dataclass
class InferenceLog:
    """One request as the gateway saw it; a mirrored copy is a second record with ``role="mirror"``
    and the same ``request_id``, so the two answers can be compared side by side."""

    # No __slots__ on purpose: orjson serialises a dataclass through its __dict__ in 0.45 µs, and
    # a slotted one field by field in 2.5 µs — per record, on the gateway's request path.

    time: float  # unix seconds when the gateway received the request
    request_id: str  # the caller's x-request-id, or one the gateway made
    project: str
    model: str
    version: str
    replica: str  # the replica URL that answered ("" when none was reached)
    role: Role
    protocol: str  # "v2" (OIP /infer) or "tfserving" (:predict)
    status: int
    latency_ms: float
    request_bytes: int
    response_bytes: int
    request_hash: str | None = None  # xxh3-128 hex, with payload mode "hash" or "full"
    response_hash: str | None = None
    request_body: str | None = None  # only with payload mode "full" (UTF-8; else base64 with prefix "b64:")
    response_body: str | None = None
    error: str | None = None  # why the gateway failed the request, when it did

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LogSink(Protocol):
    """Where inference logs go: a JSON-lines file, a Redis stream, a NATS JetStream subject."""

    name: str  # for metrics: "jsonl", "redis", "nats"

    async def open(self) -> None:
        """Connect (called once, from the worker's event loop)."""

    async def write(self, records: list[InferenceLog]) -> None:
        """Ship a batch; raise any exception when it could not be shipped (the batch is then lost)."""

    async def close(self) -> None:
        """Flush and disconnect."""


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


class _Backoff:
    """Delays that start at ``initial_s`` and double up to ``max_s``; reset after a success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s


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
        self._backoff = _Backoff(retry_initial_s, retry_max_s)
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


class JsonLinesSink:
    """Appends one JSON object per line to a file (parent folders are created).

    Each batch is a single unbuffered ``write()`` to a file opened for appending, so several
    processes sharing one file on a local filesystem never interleave half lines. The disk work
    runs in a thread: the event loop never waits on the file system.
    """

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = None
        # A write the shipper timed out may still be running in its thread: never overlap two.
        self._lock = threading.Lock()

    async def open(self) -> None:
        """Create the parent folders and open the file for appending."""
        await asyncio.to_thread(self._open)

    async def write(self, records: list[InferenceLog]) -> None:
        """Append ``records``, one JSON line each."""
        file = self._file
        if file is None:
            raise RuntimeError(f"{self.path} is not open")
        # Encoded here, written there: encoding in the thread made it and the event loop take turns
        # at the GIL (a measurable cost per record); the write itself releases it. Encoded a slice
        # at a time, with requests served in between: a whole batch is several milliseconds.
        chunks = []
        for start in range(0, len(records), ENCODE_SLICE):
            if start:
                await asyncio.sleep(0)
            chunks.append(encode_lines(records[start : start + ENCODE_SLICE]))
        await asyncio.to_thread(self._write, file, b"".join(chunks))

    async def close(self) -> None:
        """Close the file."""
        file, self._file = self._file, None
        if file is not None:
            await asyncio.to_thread(self._close, file)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def _write(self, file: BinaryIO, lines: bytes) -> None:
        data = memoryview(lines)
        with self._lock:
            while data:  # a raw write may be partial (e.g. interrupted by a signal)
                written = file.write(data)
                data = data[written or 0 :]

    def _close(self, file: BinaryIO) -> None:
        with self._lock:
            file.close()


class DiscardSink:
    """A sink that takes everything and keeps nothing (``log_sink = "none"``)."""

    name = "none"

    async def open(self) -> None:
        """Nothing to open."""

    async def write(self, records: list[InferenceLog]) -> None:
        """Discard ``records``."""

    async def close(self) -> None:
        """Nothing to close."""


SINK_URL_FORMATS = (
    "jsonl:///abs/path.jsonl, a file path, redis://host:port/db?stream=NAME&maxlen=N, "
    "nats://host:port?subject=S&stream=NAME or none"
)


def open_sink(url: str) -> LogSink:
    """The sink a ``log_sink`` setting names (not yet connected: :meth:`LogShipper.start` opens it).

    ``jsonl:///abs/path.jsonl`` or a plain path: :class:`JsonLinesSink`;
    ``redis://host:port/db?stream=NAME&maxlen=N`` (or ``rediss://``): a Redis stream;
    ``nats://host:port?subject=S&stream=NAME``: a NATS JetStream subject; ``none``: discard.
    Anything else raises :class:`~modelyard.errors.InvalidInput` naming the field ``log_sink``.
    """
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise InvalidInput(f"log_sink must not be empty; use {SINK_URL_FORMATS}", field="log_sink")
    if text == "none":
        return DiscardSink()
    scheme, separator, _ = text.partition("://")
    if not separator:
        return JsonLinesSink(text)
    scheme = scheme.lower()
    if scheme == "jsonl":
        return JsonLinesSink(_jsonl_path(text))
    if scheme in ("redis", "rediss"):
        return RedisStreamSink.from_url(text)
    if scheme == "nats":
        return NatsJetStreamSink.from_url(text)
    # Name only the scheme: the rest of a URL may hold a password.
    raise InvalidInput(
        f"log_sink scheme {scheme!r} is not supported; use {SINK_URL_FORMATS}", field="log_sink"
    )


def _jsonl_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment or not parts.path.startswith("/"):
        raise InvalidInput(
            "log_sink jsonl URL must be jsonl:///absolute/path.jsonl (three slashes, no host or query)",
            field="log_sink",
        )
    return unquote(parts.path)
