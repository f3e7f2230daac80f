"""Run the registry REST API under uvicorn; announce the URL once the socket is listening."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn

from modelyard.registry.rest import build_registry_app
from modelyard.registry.settings import RegistrySettings

__all__ = ["run_registry_server"]


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets and not self.should_exit:
            host, port = sockets[0].getsockname()[:2]
            self._on_ready(f"http://{host}:{port}")

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the stop signal on the way out; a clean shutdown should exit 0.
            self._captured_signals.clear()


def _announce(url: str) -> None:
    # One machine-readable line on stdout, like the model server's: scripts wait for it.
    print(f"modelyard registry: serving on {url}", flush=True)


def run_registry_server(settings: RegistrySettings, on_ready: Callable[[str], None] = _announce) -> None:
    """Serve the registry on ``settings.host:settings.port`` (port 0 picks one) until a signal stops it."""
    from modelyard.serve import bind_socket  # the model server's socket helper: port 0, reuse-addr

    app = build_registry_app(settings)
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False, lifespan="on")
    server = _AnnouncingServer(config, on_ready)
    sock = bind_socket(settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
