"""Kubernetes probes and the metrics endpoint.

- ``/health/live``: the process answers. Never looks at models (a failing liveness probe restarts).
- ``/health/startup``: every model loaded and warmed up. Gates the other two in Kubernetes.
- ``/health/ready``: started, not draining, every model ready and healthy enough to take traffic
  (healthy: the last background poll of its ``health()`` hook passed; the probe never calls it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.server.dataplane import DataPlane
from modelyard.server.metrics import CONTENT_TYPE
from modelyard.web.http import json_response

__all__ = ["probe_routes"]


def probe_routes(plane: DataPlane) -> list[Route]:
    async def live(request: Request) -> Response:
        return json_response({"live": plane.live()})

    async def startup(request: Request) -> Response:
        ok = plane.started()
        body: dict[str, object] = {"started": ok}
        if plane.lifecycle.startup_error:
            body["error"] = plane.lifecycle.startup_error
        return json_response(body, status=200 if ok else 503)

    async def ready(request: Request) -> Response:
        ok = plane.ready()
        models = {f"{s.name}/{s.version}": s.state if s.healthy else "UNHEALTHY" for s in plane.index()}
        body = {"ready": ok, "draining": plane.lifecycle.draining, "models": models}
        return json_response(body, status=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(plane.metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/startup", startup, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
