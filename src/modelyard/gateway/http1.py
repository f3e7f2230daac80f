"""The gateway's production front end: a raw HTTP/1.1 server on asyncio protocols and httptools.

Measured on this project's 2-core machine (docs/performance.md): uvicorn's ASGI plumbing alone cost
about four times the whole per-request budget of a proxy hop, so ``modelyard gateway serve`` runs
this small server instead, feeding the same :class:`GatewayService` as the ASGI adapter. It speaks
what a gateway needs: keep-alive, pipelining (answered in order), ``Expect: 100-continue``,
Content-Length and chunked request bodies, a body limit enforced while reading, idle timeouts, and
a graceful drain on SIGTERM (stop accepting, finish in-flight requests, close); over TLS when the
settings name a certificate.

A worker may run two of these servers on one service: the public one, which forwards model paths
and answers the probes, and the admin one (``GatewaySettings.admin_port``), which forwards nothing
and also answers ``/metrics`` and ``/-/routing`` (``own_endpoints.py`` says why they are kept off
the public port). Paths are routed as they were sent, percent-encoding and all
(``admission.parse_path`` decodes each segment on its own).
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable

import httptools

from modelyard.errors import InvalidInput, ModelyardError, PayloadTooLarge
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.service import GatewayService
from modelyard.gateway.upstream import HOP_BY_HOP
from modelyard.web.listen import settle_gc

__all__ = ["Http1Server", "serve_forever"]

log = logging.getLogger("modelyard.gateway")
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
# One read can end a request and start the next one's head, so raw counts may overshoot by a read.
_READ_SLACK = 256 * 1024
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in http.HTTPStatus
}

# A parsed request waiting to be answered: (admitted request | ready-made answer | (method, path)), body,
# keep-alive, HEAD (answered without a body)
_Pending = tuple[GatewayRequest | GatewayResponse | tuple[str, str], bytes, bool, bool]


class _Connection(asyncio.Protocol):
    """One client connection; requests are answered one at a time, in the order they came."""

    def __init__(self, server: Http1Server) -> None:
        self.server = server
        self.service = server.service
        self.admin = server.admin
        self.batcher = server.service.batcher  # every write and close goes through it, in order
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[_Pending] = collections.deque()
        self.busy = False
        self.paused = False
        self.closed = False
        self.failed = False  # an error answer is queued: nothing after it is read or answered
        self.answering: tuple[GatewayRequest, bool, bool] | None = None  # the one in the service
        self.last_active = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect = b""  # the Expect header's value, lower-cased
        self.head_bytes = 0
        self.raw_head = 0  # bytes received while the head is incomplete (includes the body's start)
        self.body: list[bytes] = []
        self.size = 0
        self.current: GatewayRequest | GatewayResponse | tuple[str, str] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports duck-type
        self.server.connections.add(self)
        self.service.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.service.connections -= 1

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.failed:
            return
        if self.current is None and self.raw_head > MAX_HEAD_BYTES + _READ_SLACK:
            # httptools buffers a header until its line ends, so an endless header line is cut
            # off here, by the bytes received while the head stayed incomplete.
            limits = f"{MAX_HEAD_BYTES} bytes, {MAX_HEADERS} headers"
            self._fail(InvalidInput(f"request head too large (limit {limits})", field="headers"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidInput("protocol upgrades are not supported", field="upgrade"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidInput(f"malformed HTTP request: {exc}", field="request"))
        if self.current is None:
            self.raw_head += len(data)

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        name = name.lower()
        headers.append((name, value))
        if name == b"expect":
            self.expect = value.lower()
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_HEAD_BYTES or len(headers) > MAX_HEADERS:
            self._head_too_large()

    def _head_too_large(self) -> None:
        limits = f"{MAX_HEAD_BYTES} bytes, {MAX_HEADERS} headers"
        self._fail(InvalidInput(f"request head too large (limit {limits})", field="headers"))
        raise httptools.HttpParserCallbackError("request head too large")  # stop parsing

    def on_headers_complete(self) -> None:
        if self.failed:
            return
        if self.parser.should_upgrade():
            self._fail(InvalidInput("protocol upgrades are not supported", field="upgrade"))
            return
        method = self.parser.get_method().decode()
        path = self.url.split(b"?", 1)[0].decode("latin-1")  # not decoded: see parse_path
        admitted = None if self.admin else self.service.admit(method, path, self.headers)
        self.current = (method, path) if admitted is None else admitted
        if isinstance(admitted, GatewayResponse) and admitted.status == 413:
            self._fail_response(admitted)  # the body is not wanted: do not read it at all
        elif isinstance(admitted, GatewayRequest) and self.expect == b"100-continue":
            # Answered here and the body read whole before forwarding; the upstream client never
            # forwards Expect (upstream.HOP_BY_HOP), so a replica's own 100 cannot be taken for the answer.
            assert self.transport is not None
            self.batcher.write(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.failed or not isinstance(self.current, GatewayRequest):
            return  # a body nobody will read (refused or our own endpoints): discard it
        self.size += len(body)
        limit = self.service.settings.max_body_bytes
        if self.size > limit:
            self._fail_response(self.service.refused(error_response(PayloadTooLarge(self.size, limit))))
            raise httptools.HttpParserCallbackError("body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        current = self.current
        if current is None or self.closed or self.failed:
            return
        parts = self.body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        keep_alive = self.parser.should_keep_alive()
        self._reset()
        if isinstance(current, GatewayRequest) and not (self.busy or self.queue):  # the usual case
            current.body = body
            self._dispatch(current, keep_alive, False)
            return
        self.queue.append((current, body, keep_alive, self.parser.get_method() == b"HEAD"))
        self._start_answering()
        if len(self.queue) > 16 and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # a client pipelining far ahead waits its turn

    def _start_answering(self) -> None:
        if not self.busy:
            self._answer_next()

    # answering
    def _answer_next(self) -> None:
        """Answer queued requests in order; a proxied one resumes here from its completion callback."""
        while self.queue and not self.closed:
            current, body, keep_alive, head = self.queue.popleft()
            if isinstance(current, GatewayRequest):
                current.body = body
                self._dispatch(current, keep_alive, head)
                return
            if isinstance(current, tuple):
                response = self.service.other(current[0], current[1], self.admin)
            else:
                response = current
            self._write(response, "", keep_alive, head)
        self.busy = False
        self.last_active = time.monotonic()
        if self.paused and self.transport is not None and not (self.closed or self.failed):
            self.paused = False
            self.transport.resume_reading()

    def _dispatch(self, request: GatewayRequest, keep_alive: bool, head: bool) -> None:
        self.busy = True
        self.answering = (request, keep_alive, head)
        self.service.dispatch(request, self._answered)

    def _answered(self, response: GatewayResponse) -> None:
        if self.answering is None:  # answered already (see GatewayService.dispatch)
            return
        request, keep_alive, head = self.answering
        self.answering = None
        try:
            self._write(response, request.request_id, keep_alive, head)
        finally:  # the request leaves the in-flight count whatever happened to its answer
            self.service.finish(request, response)
        if self.queue or self.paused or self.closed:
            self._answer_next()
        else:  # nothing waiting: what _answer_next would do, without the loop
            self.busy = False
            self.last_active = time.monotonic()

    def _write(
        self, response: GatewayResponse, request_id: str, keep_alive: bool, head_only: bool = False
    ) -> None:
        if self.closed or self.transport is None:
            return
        keep_alive = keep_alive and not self.server.draining
        status = _STATUS_LINES.get(response.status) or b"HTTP/1.1 %d Unknown\r\n" % response.status
        head = [status]
        for name, value in response.headers:  # what app.py's _response_headers() gives, in one pass
            if name not in HOP_BY_HOP:
                head += (name, b": ", value, b"\r\n")
        if request_id:
            head += (b"x-request-id: ", request_id.encode(), b"\r\n")
        if response.version_headers is not None:  # whole lines, made when the routing table loaded
            head.append(response.version_headers.lines)
        head.append(b"content-length: %d\r\n" % len(response.body))
        head.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        if not head_only:  # a HEAD answer has the length of the body it would have, not the body
            head.append(response.body)
        self.batcher.write(self.transport, b"".join(head))
        if not keep_alive:
            self.close()

    def _fail(self, error: ModelyardError) -> None:
        if not self.failed:  # one answer per failure, counted once
            self._fail_response(self.service.refused(error_response(error)))

    def _fail_response(self, response: GatewayResponse) -> None:
        """Answer after the requests read before it (pipelined answers stay in order), then close:
        after a bad request the stream cannot be trusted, so nothing more is read."""
        self.failed = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.queue.append((response, b"", False, False))
        self._start_answering()

    def close(self) -> None:
        """Close once the answers already written have gone out."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.batcher.close(self.transport)

    @property
    def idle(self) -> bool:
        return not self.busy and not self.queue


class Http1Server:
    """Accepts connections on ``sock`` for one :class:`GatewayService`; ``admin``: the admin
    listener (see the module docstring); ``tls``: serve HTTPS with this context."""

    def __init__(
        self,
        service: GatewayService,
        *,
        keepalive_timeout_s: float = 75.0,
        admin: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.admin = admin
        self.tls = tls
        self.connections: set[_Connection] = set()
        self.draining = False
        self.keepalive_timeout_s = keepalive_timeout_s
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            sock=sock,
            backlog=2048,
            ssl=self.tls,
            ssl_handshake_timeout=10.0 if self.tls is not None else None,
            # A TLS close waits for the peer's close_notify, which an idle keep-alive client may
            # never send: the default 30 s held every drain (SIGTERM) that long.
            ssl_shutdown_timeout=1.0 if self.tls is not None else None,
        )
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.keepalive_timeout_s / 2))
            cutoff = time.monotonic() - self.keepalive_timeout_s
            for connection in [c for c in self.connections if c.idle and c.last_active < cutoff]:
                connection.close()

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``timeout_s``), close the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for connection in [c for c in self.connections if c.idle]:
                connection.close()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        self.service.batcher.flush()  # the closes just queued: do not wait for another turn
        if self._sweeper is not None:
            self._sweeper.cancel()


def serve_forever(
    service: GatewayService,
    sock: socket.socket,
    on_ready: Callable[[str], None],
    drain_timeout_s: float = 30.0,
    *,
    admin_sock: socket.socket | None = None,
) -> None:
    """Run one worker on uvloop until SIGTERM/SIGINT, then drain and stop the service; with
    ``admin_sock``, the admin listener too. TLS when ``service.settings`` name a certificate."""
    import uvloop

    settings = service.settings
    context = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        from modelyard.gateway.tls import server_context

        context = server_context(settings.tls_cert, settings.tls_key)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await service.start()
        servers = [(Http1Server(service, tls=context), sock)]
        if admin_sock is not None:
            servers.append((Http1Server(service, admin=True, tls=context), admin_sock))
        for server, listening in servers:
            await server.start(listening)
        settle_gc()
        host, port = sock.getsockname()[:2]
        on_ready(f"{settings.scheme}://{host}:{port}")
        await stop.wait()
        await asyncio.gather(*(server.drain(drain_timeout_s) for server, _ in servers))
        await service.stop()

    uvloop.run(main())
