"""Run the control plane's REST API under uvicorn; announce the URL once the socket is listening."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from modelyard._process import announce
from modelyard.access.policy import exposure_problem
from modelyard.access.store import TokenStore
from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.web.listen import AnnouncingServer, bind_socket

__all__ = ["check_exposure", "run_registry_server", "uvicorn_config"]


def _announce(url: str) -> None:
    announce(url, "registry")


def check_exposure(settings: ControlSettings) -> None:
    """Exit with the reason when ``settings`` would expose the control plane without access
    control (``access/policy.py``: off loopback, an admin token must exist)."""
    store = TokenStore.open(settings)
    try:
        problem = exposure_problem(settings, store)
    finally:
        store.close()
    if problem is not None:
        raise SystemExit(f"modelyard: {problem}")


def uvicorn_config(app: Starlette, settings: ControlSettings) -> uvicorn.Config:
    """How uvicorn runs the control plane: its log level and, with a certificate, TLS."""
    cert, key = settings.tls_cert, settings.tls_key
    return uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        ssl_certfile=str(cert) if cert is not None else None,
        ssl_keyfile=str(key) if key is not None else None,
    )


def run_registry_server(
    settings: ControlSettings,
    on_ready: Callable[[str], None] = _announce,
    *,
    build: Callable[[ControlSettings], Starlette] = build_control_app,
) -> None:
    """Serve the control plane on ``settings.host:settings.port`` (port 0 picks one) until a signal
    stops it; refused off loopback without an admin token (:func:`check_exposure`).

    ``build`` makes the app: ``modelyard registry serve`` passes ``modelyard.control.app.build_control_app``,
    which adds the gateway's routing table to the registry's API.
    """
    check_exposure(settings)
    app = build(settings)
    server = AnnouncingServer(uvicorn_config(app, settings), on_ready)
    sock = bind_socket(settings.host, settings.port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
