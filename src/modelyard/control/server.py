"""Run the registry REST API under uvicorn; announce the URL once the socket is listening."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from modelyard.control.settings import ControlSettings
from modelyard.registry.rest import build_registry_app
from modelyard.web.listen import AnnouncingServer, bind_socket

__all__ = ["run_registry_server"]


def _announce(url: str) -> None:
    # One machine-readable line on stdout, like the model server's: scripts wait for it.
    print(f"modelyard registry: serving on {url}", flush=True)


def run_registry_server(
    settings: ControlSettings,
    on_ready: Callable[[str], None] = _announce,
    *,
    build: Callable[[ControlSettings], Starlette] = build_registry_app,
) -> None:
    """Serve the registry on ``settings.host:settings.port`` (port 0 picks one) until a signal stops it.

    ``build`` makes the app: ``modelyard registry serve`` passes ``modelyard.control.app.build_control_app``,
    which adds the gateway's routing table to the registry's API.
    """
    app = build(settings)
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False, lifespan="on")
    server = AnnouncingServer(config, on_ready)
    sock = bind_socket(settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
