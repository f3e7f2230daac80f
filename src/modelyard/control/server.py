"""Run the registry REST API under uvicorn; announce the URL once the socket is listening."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from modelyard._process import announce
from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.web.listen import AnnouncingServer, bind_socket

__all__ = ["run_registry_server"]


def _announce(url: str) -> None:
    announce(url, "registry")


def run_registry_server(
    settings: ControlSettings,
    on_ready: Callable[[str], None] = _announce,
    *,
    build: Callable[[ControlSettings], Starlette] = build_control_app,
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
