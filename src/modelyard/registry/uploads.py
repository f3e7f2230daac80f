"""Feeding an ASGI request body to the (blocking) artifact store as it arrives, in a worker thread.

The event loop puts chunks on a small bounded queue; a worker thread runs ``Registry.upload`` over
an iterator that takes them off. If the client disconnects, stalls, or anything else interrupts the
body, an exception is queued instead of the end marker: the iterator raises it inside the store's
``put``, which deletes its temporary object. So an interrupted upload leaves nothing behind.

A slow or stalled client must never hold the control plane: :class:`UploadGate` admits at most
``max_concurrent`` uploads at once (the rest are refused before their body is read), drops one that
sends nothing for ``idle_timeout_s`` or, once that long has passed, averages under
``MIN_UPLOAD_RATE`` bytes a second since its body began (a trickle of a byte now and then would
otherwise keep a slot forever), and runs the store's side on worker threads counted against
its own capacity limiter, never the shared pool every other API's database calls run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator

import anyio
import anyio.to_thread

from modelyard.errors import InvalidInput, Overloaded
from modelyard.registry.types import StoredArtifact

__all__ = ["MIN_UPLOAD_RATE", "UploadAborted", "UploadGate", "stream_upload"]

_QUEUE_CHUNKS = 16  # bounds the memory one upload holds while the store is slower than the client
_END = b""
_RETRY_AFTER_S = 1.0
# The slowest average an upload may keep once its first ``idle_timeout_s`` are over (bytes a second):
# 128 kbit/s, far below any link a model is pushed over, yet it makes holding one of the few upload
# slots cost an attacker bandwidth, and bounds how long any upload can last.
MIN_UPLOAD_RATE = 16 * 1024
# How much longer than the idle timeout the store's thread waits for the next chunk before it gives
# up on its own: the event loop always queues the abort first; this is the thread's backstop.
_THREAD_GRACE_S = 5.0

Upload = Callable[[Iterator[bytes]], StoredArtifact]


class UploadAborted(InvalidInput):
    """The request body ended abnormally; raised inside the store so it discards what it wrote."""


class _Bridge:
    def __init__(self, wait_s: float | None = None) -> None:
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self.wait_s = wait_s

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                item = self.queue.get(timeout=self.wait_s)
            except queue.Empty:
                raise UploadAborted("upload abandoned: no data reached the store", field="body") from None
            if isinstance(item, BaseException):
                raise item
            if item == _END:
                return
            yield item

    async def feed(self, item: bytes | BaseException, consumer: asyncio.Future[StoredArtifact]) -> bool:
        """Queue ``item``; False if the consumer has already finished (it failed: stop sending)."""
        while True:
            try:
                self.queue.put_nowait(item)
                return True
            except queue.Full:
                if consumer.done():
                    return False
                await asyncio.sleep(0.002)


async def _paced(
    body: AsyncIterable[bytes], idle_timeout_s: float | None, min_rate: float = MIN_UPLOAD_RATE
) -> AsyncIterator[bytes]:
    """``body``'s chunks, raising :class:`UploadAborted` when none arrives for ``idle_timeout_s``, or
    when, after the first ``idle_timeout_s``, fewer than ``min_rate`` bytes a second came on average.

    Each wait ends at the earlier of the idle deadline and the moment the average would fall under
    ``min_rate`` (``received / min_rate`` seconds in, never before the grace): a chunk that arrives
    in time moves both deadlines on, so no check is needed when one does.
    """
    chunks = aiter(body)
    started = asyncio.get_running_loop().time()
    received = 0
    while True:
        wait_s, too_slow = idle_timeout_s, False
        if idle_timeout_s is not None and min_rate > 0:
            elapsed = asyncio.get_running_loop().time() - started
            rate_wait_s = max(idle_timeout_s, received / min_rate) - elapsed
            if rate_wait_s < idle_timeout_s:
                wait_s, too_slow = max(rate_wait_s, 0.0), True
        try:
            async with asyncio.timeout(wait_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _stalled(idle_timeout_s, received, min_rate, too_slow) from None
        received += len(chunk)
        yield chunk


def _stalled(idle_timeout_s: float | None, received: int, min_rate: float, too_slow: bool) -> UploadAborted:
    if too_slow:
        return UploadAborted(
            f"upload too slow: {received} bytes received, under the {min_rate:g} bytes/s an upload"
            f" must average after its first {idle_timeout_s:g} s; it was discarded",
            field="body",
        )
    return UploadAborted(
        f"upload stalled: nothing received for {idle_timeout_s:g} s; it was discarded", field="body"
    )


async def stream_upload(
    body: AsyncIterable[bytes],
    upload: Upload,
    *,
    idle_timeout_s: float | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    min_rate: float = MIN_UPLOAD_RATE,
) -> StoredArtifact:
    """Run ``upload(chunks)`` in a thread (counted against ``limiter``) while ``body`` supplies the
    chunks; a body that sends nothing for ``idle_timeout_s``, or averages under ``min_rate`` bytes a
    second once that long has passed, is aborted."""
    wait_s = None if idle_timeout_s is None else idle_timeout_s + _THREAD_GRACE_S
    bridge = _Bridge(wait_s)
    consumer = asyncio.ensure_future(anyio.to_thread.run_sync(upload, bridge.chunks(), limiter=limiter))
    try:
        async for chunk in _paced(body, idle_timeout_s, min_rate):
            if chunk and not await bridge.feed(chunk, consumer):
                break
        else:
            await bridge.feed(_END, consumer)
    except BaseException as exc:
        reason = exc if isinstance(exc, UploadAborted) else None
        abort = reason or UploadAborted(f"upload interrupted: {type(exc).__name__}", field="body")
        await bridge.feed(abort, consumer)
        with contextlib.suppress(Exception):
            await consumer
        raise
    return await consumer


class UploadGate:
    """At most ``max_concurrent`` uploads at once, each dropped after ``idle_timeout_s`` of silence
    (or, past that, when it averages under ``MIN_UPLOAD_RATE``), their store work on threads of
    their own capacity limiter (one gate per app)."""

    def __init__(self, max_concurrent: int, idle_timeout_s: float) -> None:
        self.max_concurrent = max_concurrent
        self.idle_timeout_s = idle_timeout_s
        self.active = 0
        self._limiter: anyio.CapacityLimiter | None = None

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """A slot for one upload, or :class:`Overloaded` (503 + Retry-After) when all are taken.

        Runs on the event loop only, so the count needs no lock; it is checked before the body is
        read or a thread is asked for.
        """
        if self.active >= self.max_concurrent:
            raise Overloaded(
                "artifacts",
                self.active,
                _RETRY_AFTER_S,
                f"{self.active} uploads are already in progress (the limit): retry later",
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def stream(self, body: AsyncIterable[bytes], upload: Upload) -> StoredArtifact:
        """:func:`stream_upload` under this gate's idle timeout and thread limiter."""
        if self._limiter is None:  # made on the event loop, where anyio can tell which backend runs
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        return await stream_upload(body, upload, idle_timeout_s=self.idle_timeout_s, limiter=self._limiter)
