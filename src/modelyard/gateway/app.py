"""The gateway as an ASGI app: ``build_gateway_app(settings) -> ASGI app``.

Routes (``{p}`` project, ``{m}`` model, ``{v}`` version):

    POST /projects/{p}/models/{m}[/versions/{v}]:predict   TF-Serving body, passed through
    POST /projects/{p}/models/{m}[/versions/{v}]/infer     Open Inference Protocol body, passed through
    GET  /projects/{p}/models/{m}[/versions/{v}]           the replica's V2 model metadata
    GET  /health/live, /health/ready (also as /v2/health/live, /v2/health/ready)

and on the admin app only (``GatewayApp.admin_app()``: they name replica URLs, own_endpoints.py):

    GET  /metrics, /-/routing

This adapter makes the gateway buildable in-process (tests, any ASGI server); ``modelyard gateway
serve`` runs the same :class:`GatewayService` behind the raw HTTP/1.1 server in ``http1.py``,
which measured several times cheaper per request than an ASGI server (docs/performance.md). TLS
is the ASGI server's to do (uvicorn's ``--ssl-certfile``/``--ssl-keyfile``). Paths are routed as
the client sent them (``raw_path``), not as the server decoded them: see ``admission.parse_path``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelyard.errors import ModelyardError
from modelyard.gateway.logs import LogSink
from modelyard.gateway.messages import GatewayResponse, error_response
from modelyard.gateway.service import GatewayService
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.tablepoll import TableSource
from modelyard.gateway.upstream import HOP_BY_HOP
from modelyard.web.asgi import receive_raw

__all__ = ["GatewayApp", "build_gateway_app"]

log = logging.getLogger("modelyard.gateway")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class GatewayApp:
    """The ASGI callable around one :class:`GatewayService` (its lifespan starts and stops it).

    ``admin``: the admin app, which forwards nothing and answers the gateway's own endpoints, all
    of them; serve it on an address only operators reach. Its lifespan leaves the service alone:
    the public app's starts and stops it.
    """

    def __init__(self, service: GatewayService, *, admin: bool = False) -> None:
        self.service = service
        self.admin = admin

    def admin_app(self) -> GatewayApp:
        """The admin app on this app's service."""
        return GatewayApp(self.service, admin=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        method, path = scope["method"], _raw_path(scope)
        admitted = None if self.admin else service.admit(method, path, scope["headers"])
        if admitted is None:
            await _send(send, service.other(method, path, self.admin), "")
            return
        if isinstance(admitted, GatewayResponse):
            await _send(send, admitted, "")
            return
        limit = service.settings.max_body_bytes
        try:
            body = await receive_raw(receive, limit) if admitted.expects_body else b""
        except ModelyardError as exc:
            await _send(send, service.refused(error_response(exc)), admitted.request_id)
            return
        request = admitted
        request.body = body
        response = await service.serve(request)
        await _send(send, response, request.request_id)
        service.gateway.finish(request, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if not self.admin:
                        await self.service.start()
                except Exception as exc:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if not self.admin:
                    await self.service.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_gateway_app(
    settings: GatewaySettings, source: TableSource | None = None, sink: LogSink | None = None
) -> GatewayApp:
    """The gateway ASGI app; reads routes as :func:`build_service` says."""
    return GatewayApp(build_service(settings, source, sink))


def build_service(
    settings: GatewaySettings, source: TableSource | None = None, sink: LogSink | None = None
) -> GatewayService:
    """One worker's :class:`GatewayService`; the routing table comes from ``source`` when given,
    else from ``settings.routes_file`` when set, else from ``settings.control``'s database."""
    if source is not None:
        return GatewayService(settings, source, sink)
    if settings.routes_file is not None:
        from modelyard.routing.route_file import RouteFile

        return GatewayService(settings, RouteFile(settings.routes_file), sink)
    from modelyard.routing.store import RouteStore

    return GatewayService(settings, RouteStore.open(settings.control), sink, owns_source=True)


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it: ``raw_path`` (less any query string, which some servers
    leave on it); a server that gives none leaves only the decoded ``path`` to go by."""
    raw = scope.get("raw_path")
    if not raw:
        return str(scope["path"])
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


async def _send(send: Send, response: GatewayResponse, request_id: str) -> None:
    headers = _response_headers(response, request_id)
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _response_headers(response: GatewayResponse, request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers to send: the replica's (less hop-by-hop ones), the request id, the route version's
    (made when the routing table loaded: ``choice.VersionHeaders``)."""
    headers = [(name, value) for name, value in response.headers if name not in HOP_BY_HOP]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    if response.version_headers is not None:
        headers.extend(response.version_headers.pairs)
    return headers
