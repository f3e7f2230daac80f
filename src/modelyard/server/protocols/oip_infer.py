"""``POST /v2/models/{m}[/versions/{v}]/infer``: the server's hot path, and its raw-ASGI adapter.

The benchmark (benchmarks/serve_mlp.py) showed Starlette's middleware stack and router costing
about a third of the event loop's time per inference request, time the model thread then waits
for. The app (:class:`modelyard.server.app.ModelServerApp`) sends infer requests straight here and
everything else through Starlette; plain requests skip ASGI altogether (``oip_http1``). Both answer
through :meth:`InferEndpoint.answer`; errors go through the one table in :mod:`modelyard.web.errors`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope, Send

from modelyard.errors import ModelNotFound, ModelyardError
from modelyard.server.dataplane import DataPlane
from modelyard.server.protocols.limits import BodyLimits
from modelyard.server.protocols.oip_codec import decode_request, encode_response
from modelyard.web.asgi import header, send_response
from modelyard.web.errors import error_answer as http_error_answer

__all__ = ["Answer", "BodySource", "InferEndpoint", "error_answer", "match_infer_path"]

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


# What an inference request is answered with: status, body, content type, extra headers.
Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
# The request body, or how to read it (the ASGI adapter reads while it checks the limits).
BodySource = bytes | Callable[[], Awaitable[bytes]]

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


class InferEndpoint:
    """The inference endpoint: :meth:`answer` is the transport-free core, ``__call__`` its raw-ASGI
    adapter (the caller has matched the path). ``oip_http1`` answers the same core without ASGI."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limits = BodyLimits(plane.settings)
        self._in_flight = plane.metrics.in_flight.labels(PROTOCOL)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, model: str, version: str | None
    ) -> None:
        headers = scope["headers"]

        def read() -> Awaitable[bytes]:
            return self.limits.read(receive, headers)

        status, payload, content_type, extra = await self.answer(model, version, headers, read, scope["path"])
        await send_response(send, status, payload, content_type, extra)

    async def answer(
        self, model: str, version: str | None, headers: list[tuple[bytes, bytes]], body: BodySource, path: str
    ) -> Answer:
        """Answer one request, errors included (rendered through the one table); never raises but
        for cancellation. ``path`` is for the log only."""
        started = time.perf_counter()
        self._in_flight.inc()
        try:
            answer = await self._infer(model, version, headers, body)
        except ModelNotFound as exc:
            model = ""  # never let arbitrary names in URLs become metric label values
            answer = error_answer(exc)
        except ModelyardError as exc:
            answer = error_answer(exc)
        except Exception:
            log.exception("unhandled error on POST %s", path)
            answer = error_answer(ModelyardError("internal server error"))
        finally:
            self._in_flight.dec()
        self.plane.metrics.observe_request(model, PROTOCOL, answer[0], time.perf_counter() - started)
        return answer

    async def _infer(
        self, model: str, version: str | None, headers: list[tuple[bytes, bytes]], body: BodySource
    ) -> Answer:
        self.plane.model(model, version)  # 404 before reading a body we would not use
        data = body if isinstance(body, bytes) else await body()
        request, binary_choices = decode_request(
            data, header(headers, b"inference-header-content-length"), self.limits.check_json
        )
        result = await self.plane.infer(model, version, request)
        binary_default = request.parameters.get("binary_data_output") is True
        payload, json_length = encode_response(result, binary_default, binary_choices)
        if json_length is None:
            return 200, payload, _JSON, []
        return 200, payload, _BINARY, [(b"inference-header-content-length", str(json_length).encode())]


def error_answer(error: ModelyardError) -> Answer:
    """An error as an :data:`Answer`, through the one table."""
    status, body, extra = http_error_answer(error)
    return status, body, _JSON, extra
