"""Raw-ASGI helpers for the hot path, where a framework's per-request work would cost throughput.

Only the inference endpoints use these; everything else goes through Starlette. Both paths
render errors through the same table (:mod:`modelyard.web.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Send

from modelyard.errors import InvalidInput, ModelyardError, PayloadTooLarge
from modelyard.web.errors import error_answer
from modelyard.web.http import decompress

__all__ = ["header", "receive_body", "receive_raw", "send_error", "send_response"]

_JSON = b"application/json"


def header(raw_headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A request header's value (``name`` lower-case), or None."""
    for key, value in raw_headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def receive_raw(receive: Receive, limit: int) -> bytes:
    """The body's bytes as sent (no decoding), refusing more than ``limit`` while reading."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def receive_body(
    receive: Receive, headers: list[tuple[bytes, bytes]], limit: int, inflated_limit: int | None = None
) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes as sent, and decompress gzip/deflate,
    refusing more than ``inflated_limit`` (default: ``limit``) bytes once inflated.

    Inflating runs in a worker thread: zlib lets go of the GIL, so the event loop keeps serving
    while a large body inflates, and the output never grows past the limit (a "zip bomb" costs at
    most ``inflated_limit`` bytes of memory, then gets 413).
    """
    declared = header(headers, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(int(declared), limit)
    body = await receive_raw(receive, limit)
    encoding = (header(headers, b"content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    cap = limit if inflated_limit is None else inflated_limit
    return await run_in_threadpool(decompress, body, encoding, cap)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ModelyardError) -> int:
    """Render a domain error through the one table; returns the status sent."""
    status, body, extra = error_answer(error)
    await send_response(send, status, body, extra=extra)
    return status
