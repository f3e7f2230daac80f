"""Run the model server under uvicorn (uvloop + httptools), with a graceful, readiness-first drain.

On SIGTERM/SIGINT: readiness turns false at once (so load balancers stop sending), the server
keeps serving for ``drain_grace_s``, then stops accepting connections and waits up to
``drain_timeout_s`` for in-flight requests before models are unloaded.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType

import uvicorn

from modelyard._process import announce, watch_parent_from_env
from modelyard.sdk import ModelSpec
from modelyard.server import DataPlane, Settings
from modelyard.server.app import build_app
from modelyard.web.listen import AnnouncingServer, bind_socket

__all__ = ["run"]

log = logging.getLogger("modelyard.server")


class _DrainingServer(AnnouncingServer):
    def __init__(self, config: uvicorn.Config, plane: DataPlane, on_ready: Callable[[str], None]) -> None:
        super().__init__(config, on_ready)
        self._plane = plane
        self._drain_timer: threading.Timer | None = None

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


def _configure_logging(level: str) -> None:
    """Send modelyard's own log records to stderr, formatted like uvicorn's, at ``level``."""
    logger = logging.getLogger("modelyard")
    if not logger.handlers:  # an embedding application may have configured it already
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel("DEBUG" if level == "trace" else level.upper())  # "trace" is uvicorn-only


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
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
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
