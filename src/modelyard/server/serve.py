"""Run the model server under uvicorn (uvloop + httptools), with a graceful, readiness-first drain.

On SIGTERM/SIGINT: readiness turns false at once (so load balancers stop sending), the server
keeps serving for ``drain_grace_s``, then stops accepting connections and waits up to
``drain_timeout_s`` for in-flight requests before models are unloaded.

With ``grpc_port`` set, the OIP gRPC service (:mod:`~modelyard.server.protocols.oip_grpc`) runs on
the same event loop: it starts once the models are loaded, right after REST, and announces itself
as ``modelyard grpc: serving on http://host:port``; on the way out it drains first (up to
``drain_timeout_s``), then REST drains and the models unload. Without it, grpc is never imported.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelyard._process import announce, watch_parent_from_env
from modelyard.errors import ErrorKind, ModelyardError, Unsupported
from modelyard.sdk import ModelSpec
from modelyard.server import DataPlane, Settings
from modelyard.server.app import ModelServerApp, build_app
from modelyard.server.protocols.oip_http1 import infer_protocol
from modelyard.web.errors import error_body
from modelyard.web.listen import AnnouncingServer, bind_socket, settle_gc

if TYPE_CHECKING:
    from modelyard.server.protocols.oip_grpc import GrpcListener

__all__ = ["header_limited_protocol", "run", "server_protocol"]

log = logging.getLogger("modelyard.server")


class _DrainingServer(AnnouncingServer):
    def __init__(self, config: uvicorn.Config, plane: DataPlane, on_ready: Callable[[str], None]) -> None:
        super().__init__(config, on_ready)
        self._plane = plane
        self._drain_timer: threading.Timer | None = None
        self._grpc: GrpcListener | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        port = self._plane.settings.grpc_port
        if port is not None:  # the port is taken first: a busy one fails before any model loads
            from modelyard.server.protocols.oip_grpc import GrpcListener  # grpc only when asked

            self._grpc = GrpcListener(self._plane, self._plane.settings.host, port)
            self._grpc.bind()
        await super().startup(sockets)
        if self._grpc is not None and not self.should_exit:
            announce(await self._grpc.start(), "grpc")
        settle_gc()  # the models are loaded: what lives now lives as long as the server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._grpc is not None:  # before REST's drain, which ends in unloading the models
            await self._grpc.stop(self._plane.settings.drain_timeout_s)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        grace = self._plane.settings.drain_grace_s
        if self._plane.lifecycle.draining or grace <= 0:  # second signal, or no grace: go now
            self._plane.lifecycle.draining = True
            super().handle_exit(sig, frame)
            return
        self._plane.lifecycle.draining = True
        log.info("draining: not ready, still serving for %.1f s", grace)
        self._drain_timer = threading.Timer(grace, super().handle_exit, (sig, frame))
        self._drain_timer.daemon = True
        self._drain_timer.start()


_LINGER_S = 1.0  # how long a refused connection's further bytes are read and dropped


class HeadersTooLarge(ModelyardError):
    """A request line and headers over ``max_header_bytes`` (answered 431, connection closed)."""

    kind = ErrorKind.TOO_LARGE

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request line and headers exceed the limit of {limit} bytes (max_header_bytes)",
            field="headers",
        )


class _Refusal:
    """The 431 answer, as raw bytes (mid-head, before uvicorn has a request) and as an ASGI app."""

    def __init__(self, limit: int) -> None:
        self.body = error_body(HeadersTooLarge(limit))
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"connection", b"close"),
        ]
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in self.headers)
        self.raw = b"HTTP/1.1 431 Request Header Fields Too Large\r\n" + lines + b"\r\n" + self.body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 431, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def header_limited_protocol(
    max_bytes: int, base: type[HttpToolsProtocol] = HttpToolsProtocol
) -> type[HttpToolsProtocol]:
    """``base`` (uvicorn's httptools protocol, or one derived from it), refusing a request head over
    ``max_bytes`` with 431 and a close.

    httptools gathers a header that arrives in pieces by concatenating bytes, quadratic in its
    length, and neither it nor uvicorn bounds it: a 128 MiB header held the server for 22 s. Here a
    head still incomplete after ``max_bytes`` more bytes is refused there and then (counting from
    the read after the one that began it, so the tail of a pipelined request never counts), and a
    complete head is measured exactly before its request reaches the app.
    """
    refusal = _Refusal(max_bytes)

    class HeaderLimitedProtocol(base):  # type: ignore[valid-type,misc]
        _in_head = False
        _head_began_now = False
        _head_bytes = 0
        _refused = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_began_now, self._head_bytes = True, True, 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size <= max_bytes:
                super().on_headers_complete()
                return
            app, self.app = self.app, refusal  # type: ignore[has-type]  # uvicorn runs it: 431, close
            try:
                HttpToolsProtocol.on_headers_complete(self)  # uvicorn's own: never a shortcut of base
            finally:
                self.app = app

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering: read and drop what the client still sends
            super().data_received(data)
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_began_now:
                self._head_began_now = False
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_bytes:
                self._refuse_mid_head()

        def _refuse_mid_head(self) -> None:
            """Answer 431, then close *lingering*: closing at once with the client's bytes unread
            would send a reset, which can destroy the answer before the client reads it."""
            self._refused = True
            self.transport.write(refusal.raw)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)

    return HeaderLimitedProtocol


def server_protocol(settings: Settings, app: ModelServerApp) -> type[HttpToolsProtocol]:
    """The HTTP/1.1 protocol the server runs: plain inference requests answered without ASGI
    (:mod:`~modelyard.server.protocols.oip_http1`), request heads bounded by ``max_header_bytes``."""
    return header_limited_protocol(settings.max_header_bytes, infer_protocol(app.infer))


def _configure_logging(level: str) -> None:
    """Send modelyard's own log records to stderr, formatted like uvicorn's, at ``level``."""
    logger = logging.getLogger("modelyard")
    if not logger.handlers:  # an embedding application may have configured it already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel("DEBUG" if level == "trace" else level.upper())  # "trace" is uvicorn-only


# grpc core reads its experiments once, when grpc is first imported. With its EventEngine listener
# and endpoints on, every socket read happens on an EventEngine thread and is handed on to grpc's
# poller thread, then to the event loop; with them off, core's own epoll poller reads the socket in
# the poller thread itself, one thread hop fewer per completion. That cut the server's CPU per
# ModelInfer by up to about 20% on the 2-core benchmark host (docs/performance.md, "gRPC beside
# REST"). A value the operator set (even empty: grpc's defaults) is kept.
GRPC_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"


# Given the server's URL and its readiness check once it listens; returns what to call on the
# way out (``modelyard serve --announce`` passes one that heart-beats into the routing table).
OnListening = Callable[[str, Callable[[], bool]], Callable[[], None]]


def run(
    settings: Settings,
    models: Iterable[ModelSpec] = (),
    on_ready: Callable[[str], None] = announce,
    on_listening: OnListening | None = None,
) -> None:
    """Build the app and serve it until a signal stops it."""
    watch_parent_from_env()  # a replica of the local deploy backend stops with its supervisor
    if settings.grpc_port is not None:
        if importlib.util.find_spec("grpc") is None:
            raise Unsupported("serving gRPC needs grpcio: pip install 'modelyard[grpc]'", field="grpc_port")
        os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)  # before anything imports grpc
    if settings.gil_switch_interval_ms is not None:
        # The event loop thread keeps the GIL busy under load; a model thread coming back from
        # native code (onnxruntime, torch) then waits a whole switch interval for it, several times
        # per batch. At Python's default 5 ms that cut served throughput by about a quarter.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    _configure_logging(settings.log_level)
    app = build_app(settings, models)
    config = uvicorn.Config(
        app,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=server_protocol(settings, app),
        log_level=settings.log_level,
        access_log=False,
        # Nothing here reads the client's address, so X-Forwarded-* rewriting (a middleware
        # wrapped around every request) buys nothing on the hot path.
        proxy_headers=False,
        # uvicorn takes whole seconds; round up, never to None (None would wait for ever).
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        lifespan="on",
    )
    plane: DataPlane = app.state.dataplane
    on_exit: list[Callable[[], None]] = []

    def ready(url: str) -> None:
        on_ready(url)
        if on_listening is not None:
            on_exit.append(on_listening(url, plane.ready))

    server = _DrainingServer(config, plane, ready)
    sock = bind_socket(settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for leave in on_exit:
            leave()
    if not server.started:
        error = app.state.dataplane.lifecycle.startup_error
        raise SystemExit(f"modelyard: the server did not start{': ' + error if error else ''}")
