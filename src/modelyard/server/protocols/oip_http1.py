"""Plain inference requests answered on uvicorn's HTTP/1.1 protocol, without the ASGI layer.

Profiled under load on the 2-vCPU benchmark hosts (docs/performance.md, "Side by side, per
host"), about a quarter of the event loop's time per inference request went to uvicorn's ASGI
plumbing: a scope dict, a request/response cycle object, a task, and the receive/send messages.
Answered here, a request costs the loop 15-25 % less CPU. Where the model is fast the loop is what
a batch waits on, for its requests to be parsed and its answers written, so that time is
throughput. This protocol takes the requests the hot path is for — ``POST`` to an infer path, HTTP/1.1,
a ``Content-Length`` within ``max_body_bytes``, no ``Content-Encoding``, ``Transfer-Encoding`` or
``Expect`` — collects the body from httptools' callbacks, calls :meth:`InferEndpoint.answer` and
writes the answer to the transport itself. Everything else, and any request that arrives while
another is still being answered on the same connection (pipelining), goes to uvicorn as before,
which keeps its ordering, flow control, keep-alive timeout and graceful shutdown: a request taken
here stands in uvicorn's ``cycle`` slot with the few attributes uvicorn reads there.

A client that disconnects while its request waits cancels it, so the batcher frees its place.
"""

from __future__ import annotations

import asyncio
import http
import logging
import urllib.parse
from typing import cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelyard.errors import ModelyardError
from modelyard.server.protocols.oip_infer import Answer, InferEndpoint, error_answer, match_infer_path

__all__ = ["infer_protocol"]

log = logging.getLogger("modelyard.server")

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
# Headers that send a request down uvicorn's path: bodies to inflate or to read in chunks, and
# 100-continue handshakes, are rare and handled there.
_LEAVE_TO_UVICORN = frozenset((b"content-encoding", b"transfer-encoding", b"expect"))
_CUT_OFF = "the server stopped before the model answered (drain_timeout_s ran out)"


class _Event:
    """uvicorn sets a cycle's ``message_event`` when the connection is lost: here that cancels."""

    __slots__ = ("lost", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.lost = False

    def set(self) -> None:
        self.lost = True
        if self.task is not None:
            self.task.cancel()


class _Exchange:
    """One request answered here; stands in uvicorn's ``cycle`` slot while it is answered."""

    __slots__ = (
        "body",
        "disconnected",
        "headers",
        "keep_alive",
        "message_event",
        "response_complete",
        "target",
    )

    def __init__(
        self, target: tuple[str, str | None], headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        self.target = target
        self.headers = headers  # kept: the protocol's own list is replaced when the next request begins
        self.keep_alive = keep_alive
        self.body: list[bytes] = []
        self.disconnected = False
        self.response_complete = False
        self.message_event = _Event()


def infer_protocol(endpoint: InferEndpoint) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, answering plain inference requests through ``endpoint``."""
    max_body = endpoint.limits.max_body_bytes

    class InferProtocol(HttpToolsProtocol):
        _reading: _Exchange | None = None  # the request whose body is arriving
        _answering: _Exchange | None = None  # the request being answered

        def on_headers_complete(self) -> None:
            exchange = self._take()
            if exchange is None:
                super().on_headers_complete()
                return
            self.cycle = exchange  # type: ignore[assignment]  # uvicorn reads only what _Exchange has
            self._reading = exchange

        def on_body(self, body: bytes) -> None:
            if self._reading is None:
                super().on_body(body)
            else:
                self._reading.body.append(body)

        def on_message_complete(self) -> None:
            exchange = self._reading
            if exchange is None:
                super().on_message_complete()
                return
            self._reading, self._answering = None, exchange
            task = self.loop.create_task(self._answer(exchange))
            exchange.message_event.task = task
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._answering is not None and self._answering is not cast(object, self.cycle):
                self._answering.message_event.set()  # a pipelined request took the slot: cancel ours too
            super().connection_lost(exc)

        def _take(self) -> _Exchange | None:
            """The request as an exchange to answer here, or None to leave it to uvicorn."""
            if self.cycle is not None and not self.cycle.response_complete:
                return None  # pipelined behind a request not yet answered: uvicorn queues it
            if self.parser.get_method() != b"POST" or self.parser.get_http_version() != "1.1":
                return None
            if self.parser.should_upgrade():
                return None
            path = httptools.parse_url(self.url).path.decode("ascii")
            if "%" in path:
                path = urllib.parse.unquote(path)
            target = match_infer_path(self.root_path + path)
            if target is None:
                return None
            length = -1
            for name, value in self.headers:
                if name == b"content-length":
                    length = int(value) if value.isdigit() else -1
                elif name in _LEAVE_TO_UVICORN:
                    return None
            if not 0 <= length <= max_body:
                return None  # no length, or too long: uvicorn's path refuses it with the right status
            return _Exchange(target, self.headers, self.parser.should_keep_alive())

        async def _answer(self, exchange: _Exchange) -> None:
            model, version = exchange.target
            try:
                answer = await endpoint.answer(
                    model, version, exchange.headers, b"".join(exchange.body), f"/v2/models/{model}/infer"
                )
                await self._respond(exchange, answer)
            except asyncio.CancelledError:
                # The server's drain ran out before the answer went: 500, as uvicorn answers it.
                if not exchange.message_event.lost and not exchange.response_complete:
                    await self._respond(exchange, error_answer(ModelyardError(_CUT_OFF)), drain=False)
                raise
            except Exception:  # a bug here must not leave the client waiting for ever
                log.exception("answering an inference request failed")
                self.transport.close()

        async def _respond(self, exchange: _Exchange, answer: Answer, *, drain: bool = True) -> None:
            status, payload, content_type, extra = answer
            head = [
                _STATUS_LINES[status],
                *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
                b"content-type: ",
                content_type,
                b"\r\ncontent-length: ",
                str(len(payload)).encode(),
                b"\r\n",
                *(name + b": " + value + b"\r\n" for name, value in extra),
                b"" if exchange.keep_alive else b"connection: close\r\n",
                b"\r\n",
            ]
            if drain and self.flow.write_paused:  # a client that does not read: wait before writing
                await self.flow.drain()  # more, as uvicorn does; after the write nothing may await
            if self.transport.is_closing():
                return
            # Written, marked complete and handed back to uvicorn in one step: an await in between
            # would let a pipelined request start while this one still held the slot's bookkeeping.
            self.transport.write(b"".join(head) + payload)
            exchange.response_complete = True
            self._answering = None
            if not exchange.keep_alive:
                self.transport.close()
            self.on_response_complete()

    return InferProtocol
