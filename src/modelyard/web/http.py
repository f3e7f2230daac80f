"""Small HTTP helpers every plane's REST edge shares: bodies, JSON responses, error mapping."""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInput, MethodNotAllowed, ModelyardError, PayloadTooLarge, RouteNotFound
from modelyard.web.access import Role, authorize
from modelyard.web.errors import error_body, error_headers, status_for

__all__ = [
    "Handler",
    "decompress",
    "error_response",
    "guarded",
    "guarded_routes",
    "http_error",
    "in_thread",
    "json_response",
    "read_body",
    "read_model",
]

log = logging.getLogger("modelyard.server")

Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, headers=headers, media_type=JSON)


def error_response(error: ModelyardError) -> Response:
    return Response(
        error_body(error), status_code=status_for(error), headers=error_headers(error), media_type=JSON
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed (gzip/deflate), refusing more than ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    return await in_thread(decompress, body, encoding, limit)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip/deflate body, capped so a small "zip bomb" cannot blow past ``limit``.

    zlib stops writing at ``limit + 1`` bytes, so memory and time stay bounded by the limit, not by
    what the body would inflate to; past it, a 413 that says the *inflated* size was too large.
    zlib releases the GIL while it works: callers on an event loop run this in a worker thread.
    """
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(
            f"unsupported Content-Encoding '{encoding}' (use gzip or deflate)", field="content-encoding"
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding} data: {exc}", field="body") from None
    if len(out) > limit or inflater.unconsumed_tail:
        too_large = PayloadTooLarge(len(out), limit)
        too_large.message = (
            f"request body of {len(body)} bytes inflates ({encoding}) to more than {limit} bytes,"
            " the limit for decompressed bodies"
        )
        too_large.args = (too_large.message,)
        raise too_large
    if not inflater.eof:
        raise InvalidInput(f"body is truncated {encoding} data", field="body")
    return out


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404, 405) in the one JSON error schema; install as the
    ``HTTPException`` handler of every app."""
    assert isinstance(exc, HTTPException)
    error: ModelyardError
    if exc.status_code == 404:
        error = RouteNotFound(f"no route for {request.method} {request.url.path}", field="path")
    elif exc.status_code == 405:
        error = MethodNotAllowed(
            f"method {request.method} is not allowed on {request.url.path}", field="method"
        )
    else:
        error = InvalidInput(str(exc.detail))
    response = error_response(error)
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def guarded(function: Handler, role: Role) -> Handler:
    """A control-plane handler (registry, routes, deploy): the caller's role checked first (see
    ``web/access.py``), domain errors through the one table, a client gone mid-upload a bare 400,
    anything else a logged 500 — the server keeps serving."""

    @functools.wraps(function)
    async def wrapped(request: Request) -> Response:
        try:
            await authorize(request, role)
            return await function(request)
        except ModelyardError as exc:
            return error_response(exc)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; the upload was discarded
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return error_response(ModelyardError("internal server error"))

    return wrapped


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """A JSON body validated as ``model``; the first validation error is a 400 naming its field."""
    raw = await read_body(request, limit)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(f"invalid request body: {field}: {first['msg']}", field=field) from None


def guarded_routes(table: Iterable[tuple[str, str, Role, Handler]]) -> list[Route]:
    """``(method, path, least role, handler)`` rows as Starlette routes, each handler :func:`guarded`."""
    return [Route(path, guarded(handler, role), methods=[method]) for method, path, role, handler in table]


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a synchronous core call (SQLAlchemy, fsspec) in the worker pool, off the event loop."""
    return await run_in_threadpool(functools.partial(function, *args, **kwargs))
