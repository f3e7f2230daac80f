"""The gateway's own endpoints: its metrics, its probes, the routing table it is using.

Everything a worker answers itself rather than forwards: ``/metrics`` (the whole gateway's series,
``metrics_share.py``), the liveness and readiness probes, and ``/-/routing`` (the table in use and,
when the last read failed, why). Any other path that is not a model path is a 404.

``/metrics`` and ``/-/routing`` name replica URLs (the ``replica`` label, the table's replicas):
internal addresses a caller of the public port has no business seeing. They are answered only on
the admin listener (``GatewaySettings.admin_port``); on the public one they are a 404 like any
unknown path. The probes are answered on both; why the gateway is not ready (which may name a
database host or a file) only on the admin one.
"""

from __future__ import annotations

import orjson

from modelyard.errors import ErrorKind, MethodNotAllowed, RouteNotFound
from modelyard.gateway.messages import GatewayResponse, error_response
from modelyard.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from modelyard.gateway.proxy import Gateway
from modelyard.gateway.tablepoll import TablePoller
from modelyard.routing.table import route_to_dict

__all__ = ["OwnEndpoints"]

# The probes answer on the model server's paths too: /v2/health/* is what Open Inference Protocol
# clients (modelyard.Client(url).ready()) ask, /health/* what the Kubernetes probes use.
_LIVE = ("/health/live", "/v2/health/live")
_READY = ("/health/ready", "/v2/health/ready")
_ADMIN = ("/metrics", "/-/routing")
_OWN = (*_LIVE, *_READY, *_ADMIN)


class OwnEndpoints:
    """Answers the paths above for one worker (``gateway`` routes, ``tables`` keeps it current)."""

    def __init__(self, metrics: GatewayMetrics, gateway: Gateway, tables: TablePoller) -> None:
        self.metrics = metrics
        self.gateway = gateway
        self.tables = tables

    def answer(self, method: str, path: str, admin: bool = False) -> GatewayResponse:
        """The answer to ``method path`` (a 404 or 405 when it is not one of ours); ``admin``: it
        came on the admin listener, where ``/metrics`` and ``/-/routing`` are served."""
        if not admin and path in _ADMIN:
            return error_response(
                RouteNotFound(
                    f"no route for {method} {path}: it is served on the gateway's admin port only",
                    field="path",
                )
            )
        if method not in ("GET", "HEAD"):
            if path not in _OWN:
                return _not_found(method, path)
            refused = error_response(
                MethodNotAllowed(f"method {method} is not allowed on {path}", field="method")
            )
            refused.headers.append((b"allow", b"GET, HEAD"))
            return refused
        if path == "/metrics":
            return GatewayResponse(200, [(b"content-type", CONTENT_TYPE.encode())], self.metrics.render())
        if path in _LIVE:
            return _json(200, {"live": True})
        if path in _READY:
            return self._readiness(admin)
        if path == "/-/routing":
            return self._routing()
        return _not_found(method, path)

    def _readiness(self, admin: bool) -> GatewayResponse:
        reason = self.tables.not_ready()
        if reason is None:
            return _json(200, {"ready": True})
        # Why the table cannot be read names database hosts and file paths: the admin side only
        # (and the log, tablepoll.py); callers of the public port learn that it is not ready.
        why = reason if admin else "see the admin port or the gateway's log for why"
        message = f"the routing table has not been loaded yet: {why}"
        return _json(503, {"ready": False, "error": message, "kind": ErrorKind.NOT_READY.value})

    def _routing(self) -> GatewayResponse:
        table = self.gateway.router.table
        routes = [route_to_dict(route) for route in table.routes.values()]
        content: dict[str, object] = {"revision": table.revision, "routes": routes}
        if self.tables.error is not None:
            content["error"] = self.tables.error
        return _json(200, content)


def _json(status: int, content: object) -> GatewayResponse:
    return GatewayResponse(status, [(b"content-type", b"application/json")], orjson.dumps(content))


def _not_found(method: str, path: str) -> GatewayResponse:
    return error_response(RouteNotFound(f"no route for {method} {path}", field="path"))
