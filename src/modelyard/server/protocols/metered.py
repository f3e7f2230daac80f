"""The model server's handlers, metered: errors through the one table, requests counted and timed."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.server.metrics import ServerMetrics
from modelyard.web.http import Handler, error_response

__all__ = ["metered"]

log = logging.getLogger("modelyard.server")


def metered(metrics: ServerMetrics, protocol: str, handler: Handler, *, observe: bool = True) -> Handler:
    """Wrap a handler: map domain errors through the one table, count and time the request."""

    async def wrapped(request: Request) -> Response:
        started = time.perf_counter()
        gauge = metrics.in_flight.labels(protocol)
        gauge.inc()
        try:
            response = await handler(request)
        except ModelyardError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            response = error_response(ModelyardError("internal server error"))
        finally:
            gauge.dec()
        if observe:
            # An unknown model's name must not become a label value (unbounded series).
            model = request.path_params.get("model", "") if response.status_code != 404 else ""
            metrics.observe_request(model, protocol, response.status_code, time.perf_counter() - started)
        return response

    return wrapped
