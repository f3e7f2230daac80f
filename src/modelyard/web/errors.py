"""The one table from error kinds to HTTP statuses (and gRPC codes), and the one error-body schema.

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

__all__ = [
    "CODES_BY_KIND",
    "GRPC_CODE_BY_KIND",
    "STATUS_BY_KIND",
    "error_body",
    "error_from_body",
    "error_headers",
    "status_for",
]

# Each kind's answer on both wires: (HTTP status, gRPC status code name). The gRPC adapter turns
# the name into grpc.StatusCode; this layer never imports grpc.
CODES_BY_KIND: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_INPUT: (400, "INVALID_ARGUMENT"),
    ErrorKind.TOO_LARGE: (413, "RESOURCE_EXHAUSTED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.CONFLICT: (409, "ABORTED"),
    ErrorKind.NOT_READY: (503, "UNAVAILABLE"),
    ErrorKind.OVERLOADED: (503, "RESOURCE_EXHAUSTED"),  # the queue is full: gRPC's word for it
    ErrorKind.DEADLINE_EXCEEDED: (504, "DEADLINE_EXCEEDED"),
    ErrorKind.MODEL_ERROR: (500, "INTERNAL"),
    ErrorKind.UNSUPPORTED: (501, "UNIMPLEMENTED"),
    ErrorKind.METHOD_NOT_ALLOWED: (405, "UNIMPLEMENTED"),
    ErrorKind.BAD_GATEWAY: (502, "UNAVAILABLE"),
    ErrorKind.UNAUTHENTICATED: (401, "UNAUTHENTICATED"),
    ErrorKind.FORBIDDEN: (403, "PERMISSION_DENIED"),
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: (415, "INVALID_ARGUMENT"),
    ErrorKind.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.INTERNAL: (500, "INTERNAL"),
}
STATUS_BY_KIND: dict[ErrorKind, int] = {kind: http for kind, (http, _) in CODES_BY_KIND.items()}
GRPC_CODE_BY_KIND: dict[ErrorKind, str] = {kind: grpc for kind, (_, grpc) in CODES_BY_KIND.items()}


def status_for(error: ModelyardError) -> int:
    return STATUS_BY_KIND[error.kind]


def error_body(error: ModelyardError) -> bytes:
    body: dict[str, Any] = {"error": error.message, "kind": error.kind.value}
    if error.field is not None:
        body["field"] = error.field
    return orjson.dumps(body)


def error_answer(error: ModelyardError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """An error as an HTTP answer: status, JSON body, extra headers (raw, lower-case names)."""
    extra = [(name.encode(), value.encode()) for name, value in error_headers(error).items()]
    return status_for(error), error_body(error), extra


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
