"""``POST /v2/models/{m}[/versions/{v}]/infer`` as a raw ASGI endpoint: the server's hot path.

The benchmark (benchmarks/serve_mlp.py) showed Starlette's middleware stack and router costing
about a third of the event loop's time per inference request, time the model thread then waits
for. The app (:class:`modelyard.server.app.ModelServerApp`) sends infer requests straight here and
everything else through Starlette; errors still go through the one table in
:mod:`modelyard.web.errors`.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Receive, Scope, Send

from modelyard.errors import ModelNotFound, ModelyardError
from modelyard.server.dataplane import DataPlane
from modelyard.server.protocols.limits import BodyLimits
from modelyard.server.protocols.oip_codec import decode_request, encode_response
from modelyard.web.asgi import header, send_error, send_response

__all__ = ["InferEndpoint", "match_infer_path"]

log = logging.getLogger("modelyard.server")

PROTOCOL = "v2"
_PREFIX = "/v2/models/"
_SUFFIX = "/infer"


def match_infer_path(path: str) -> tuple[str, str | None] | None:
    """``(model, version)`` for an infer path, else None."""
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    parts = path[len(_PREFIX) : -len(_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


class InferEndpoint:
    """The inference endpoint over raw ASGI; the caller has matched the path."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limits = BodyLimits(plane.settings)
        self._in_flight = plane.metrics.in_flight.labels(PROTOCOL)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        self._in_flight.inc()
        try:
            status = await self._handle(scope, receive, send, model, version)
        except ModelNotFound as exc:
            model = ""  # never let arbitrary names in URLs become metric label values
            status = await send_error(send, exc)
        except ModelyardError as exc:
            status = await send_error(send, exc)
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"])
            status = await send_error(send, ModelyardError("internal server error"))
        finally:
            self._in_flight.dec()
        self.plane.metrics.observe_request(model, PROTOCOL, status, time.perf_counter() - started)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> int:
        self.plane.model(model, version)  # 404 before reading a body we would not use
        headers = scope["headers"]
        body = await self.limits.read(receive, headers)
        request, binary_choices = decode_request(
            body, header(headers, b"inference-header-content-length"), self.limits.check_json
        )
        result = await self.plane.infer(model, version, request)
        binary_default = request.parameters.get("binary_data_output") is True
        payload, json_length = encode_response(result, binary_default, binary_choices)
        if json_length is None:
            await send_response(send, 200, payload)
        else:
            extra = [(b"inference-header-content-length", str(json_length).encode())]
            await send_response(send, 200, payload, b"application/octet-stream", extra)
        return 200
