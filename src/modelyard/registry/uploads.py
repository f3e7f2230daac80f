"""Feeding an ASGI request body to the (blocking) artifact store as it arrives, in a worker thread.

The event loop puts chunks on a small bounded queue; a worker thread runs ``Registry.upload`` over
an iterator that takes them off. If the client disconnects, or anything else interrupts the body,
an exception is queued instead of the end marker: the iterator raises it inside the store's
``put``, which deletes its temporary object. So an interrupted upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterable, Callable, Iterator

from starlette.concurrency import run_in_threadpool

from modelyard.errors import InvalidInput
from modelyard.registry.types import StoredArtifact

__all__ = ["UploadAborted", "stream_upload"]

_QUEUE_CHUNKS = 16  # bounds the memory one upload holds while the store is slower than the client
_END = b""


class UploadAborted(InvalidInput):
    """The request body ended abnormally; raised inside the store so it discards what it wrote."""


class _Bridge:
    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_QUEUE_CHUNKS)

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self.queue.get()
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


async def stream_upload(
    body: AsyncIterable[bytes], upload: Callable[[Iterator[bytes]], StoredArtifact]
) -> StoredArtifact:
    """Run ``upload(chunks)`` in a thread while ``body`` supplies the chunks."""
    bridge = _Bridge()
    consumer = asyncio.ensure_future(run_in_threadpool(upload, bridge.chunks()))
    try:
        async for chunk in body:
            if chunk and not await bridge.feed(chunk, consumer):
                break
        else:
            await bridge.feed(_END, consumer)
    except BaseException as exc:
        await bridge.feed(UploadAborted(f"upload interrupted: {type(exc).__name__}", field="body"), consumer)
        with contextlib.suppress(Exception):
            await consumer
        raise
    return await consumer
