"""The one table from error kinds to HTTP statuses, and the one error-body schema.

Every error any endpoint returns has the body ``{"error": str, "kind": str, "field"?: str}``:
``error`` is what OIP and TF-Serving clients read, ``kind`` is machine-readable, ``field`` names
the part of the request at fault when there is one.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from modelyard.errors import (
    Conflict,
    ErrorKind,
    Forbidden,
    InvalidInput,
    ModelyardError,
    NotFound,
    Overloaded,
    RateLimited,
    Unauthenticated,
)

__all__ = ["STATUS_BY_KIND", "error_body", "error_from_body", "error_headers", "status_for"]

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID_INPUT: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.NOT_READY: 503,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.MODEL_ERROR: 500,
    ErrorKind.UNSUPPORTED: 501,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.BAD_GATEWAY: 502,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.INTERNAL: 500,
}


def status_for(error: ModelyardError) -> int:
    return STATUS_BY_KIND[error.kind]


def error_body(error: ModelyardError) -> bytes:
    body: dict[str, Any] = {"error": error.message, "kind": error.kind.value}
    if error.field is not None:
        body["field"] = error.field
    return orjson.dumps(body)


def error_headers(error: ModelyardError) -> dict[str, str]:
    if isinstance(error, Overloaded):
        return {"retry-after": str(max(1, round(error.retry_after)))}
    if isinstance(error, RateLimited):  # rounded up: a retry any sooner is refused again
        return {"retry-after": str(max(1, math.ceil(error.retry_after)))}
    if isinstance(error, Unauthenticated):
        return {"www-authenticate": 'Bearer realm="modelyard"'}
    return {}


_DECODED: dict[str, type[ModelyardError]] = {
    ErrorKind.NOT_FOUND.value: NotFound,
    ErrorKind.CONFLICT.value: Conflict,
    ErrorKind.INVALID_INPUT.value: InvalidInput,
    ErrorKind.UNAUTHENTICATED.value: Unauthenticated,
    ErrorKind.FORBIDDEN.value: Forbidden,
}


def error_from_body(status: int, body: bytes) -> ModelyardError:
    """The domain error an error body describes (what an HTTP client of our APIs raises)."""
    try:
        data = orjson.loads(body)
        message, kind, field = str(data["error"]), str(data["kind"]), data.get("field")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message, kind, field = f"HTTP {status}: {body[:200].decode(errors='replace')}", "internal", None
    error = _DECODED.get(kind, ModelyardError)(message, field=field if isinstance(field, str) else None)
    if type(error) is ModelyardError:
        try:
            error.kind = ErrorKind(kind)
        except ValueError:
            error.kind = ErrorKind.INTERNAL
    return error
