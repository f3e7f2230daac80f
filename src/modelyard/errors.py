"""Domain errors shared by every plane of modelyard.

Errors carry a *kind*, never a status code: the transport adapters in ``modelyard.server.protocols``
own the one table that maps kinds to HTTP statuses and the one error-body schema.

    ModelyardError
    ├── InvalidInput        (kind INVALID_INPUT)     bad body, shape, dtype, missing input
    ├── PayloadTooLarge     (kind TOO_LARGE)         body over the configured limit
    ├── ModelNotFound       (kind NOT_FOUND)         unknown model or version
    ├── RouteNotFound       (kind NOT_FOUND)         no endpoint at that path
    ├── MethodNotAllowed    (kind METHOD_NOT_ALLOWED)
    ├── ModelNotReady       (kind NOT_READY)         loading, failed, or draining
    ├── Overloaded          (kind OVERLOADED)        queue full; carries retry_after
    ├── DeadlineExceeded    (kind DEADLINE_EXCEEDED) the request's deadline passed
    ├── ModelError          (kind MODEL_ERROR)       the model's own code raised
    ├── Unsupported         (kind UNSUPPORTED)       a protocol feature we do not implement
    ├── PackageInvalid      (kind INVALID_INPUT)     a package that is malformed, unsafe or altered
    ├── NotFound            (kind NOT_FOUND)         a registry object (model, version, alias, artifact)
    ├── Conflict            (kind CONFLICT)          lost a race, or the object exists / is in use
    ├── BadGateway          (kind BAD_GATEWAY)       no replica gave a usable answer (gateway)
    ├── Unauthenticated     (kind UNAUTHENTICATED)   no credentials, or ones that are not valid
    ├── Forbidden           (kind FORBIDDEN)         valid credentials without the right to do this
    ├── RateLimited         (kind RATE_LIMITED)      a caller over its rate limit; carries retry_after
    └── UnsupportedMediaType (kind UNSUPPORTED_MEDIA_TYPE) a body of a Content-Type the endpoint refuses
"""

from __future__ import annotations

import enum

__all__ = [
    "BadGateway",
    "Conflict",
    "DeadlineExceeded",
    "ErrorKind",
    "Forbidden",
    "InvalidInput",
    "MethodNotAllowed",
    "ModelError",
    "ModelNotFound",
    "ModelNotReady",
    "ModelyardError",
    "NotFound",
    "Overloaded",
    "PackageInvalid",
    "PayloadTooLarge",
    "RateLimited",
    "RouteNotFound",
    "Unauthenticated",
    "Unsupported",
    "UnsupportedMediaType",
]


class ErrorKind(enum.Enum):
    INVALID_INPUT = "invalid_input"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    NOT_READY = "not_ready"
    OVERLOADED = "overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    MODEL_ERROR = "model_error"
    UNSUPPORTED = "unsupported"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    BAD_GATEWAY = "bad_gateway"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INTERNAL = "internal"


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose.

    ``field`` names the part of the request at fault (``inputs[0].shape``), when there is one.
    """

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, field={self.field!r})"


class InvalidInput(ModelyardError):
    kind = ErrorKind.INVALID_INPUT


class PayloadTooLarge(ModelyardError):
    kind = ErrorKind.TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes exceeds the limit of {limit} bytes", field="body")
        self.size = size
        self.limit = limit


class ModelNotFound(ModelyardError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"model '{name}'" if version is None else f"model '{name}' version '{version}'"
        super().__init__(f"{what} not found", field="model")
        self.name = name
        self.version = version


class ModelNotReady(ModelyardError):
    kind = ErrorKind.NOT_READY

    def __init__(self, name: str, state: str) -> None:
        super().__init__(f"model '{name}' is not ready (state: {state})", field="model")
        self.name = name
        self.state = state


class Overloaded(ModelyardError):
    """The model's queue is full; the client should retry after ``retry_after`` seconds."""

    kind = ErrorKind.OVERLOADED

    def __init__(
        self, name: str, queue_size: int, retry_after: float = 1.0, message: str | None = None
    ) -> None:
        super().__init__(message or f"model '{name}' is overloaded: {queue_size} requests already queued")
        self.retry_after = retry_after


class DeadlineExceeded(ModelyardError):
    kind = ErrorKind.DEADLINE_EXCEEDED

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(f"request to model '{name}' did not complete within {timeout_s:.3g} s")


class ModelError(ModelyardError):
    """The model's own hook raised; the message is the model's."""

    kind = ErrorKind.MODEL_ERROR

    def __init__(self, name: str, hook: str, cause: BaseException) -> None:
        super().__init__(f"model '{name}' failed in {hook}: {type(cause).__name__}: {cause}")
        self.hook = hook


class Unsupported(ModelyardError):
    kind = ErrorKind.UNSUPPORTED


class RouteNotFound(ModelyardError):
    kind = ErrorKind.NOT_FOUND


class MethodNotAllowed(ModelyardError):
    kind = ErrorKind.METHOD_NOT_ALLOWED


class PackageInvalid(ModelyardError):
    """A package is malformed, unsafe to unpack, or was altered; ``field`` names the file at fault."""

    kind = ErrorKind.INVALID_INPUT


class NotFound(ModelyardError):
    """A registry object (model, version, alias, artifact) does not exist."""

    kind = ErrorKind.NOT_FOUND


class Conflict(ModelyardError):
    """The object already exists, is still in use, or another client changed it first."""

    kind = ErrorKind.CONFLICT


class BadGateway(ModelyardError):
    """The gateway reached no replica, or the replicas it reached did not answer HTTP."""

    kind = ErrorKind.BAD_GATEWAY


class Unauthenticated(ModelyardError):
    """The request carries no credentials where they are required, or ones that are not valid
    (unknown, expired or revoked)."""

    kind = ErrorKind.UNAUTHENTICATED


class Forbidden(ModelyardError):
    """The caller is known but its role does not allow this; or the request is refused as a
    browser's cross-site attempt."""

    kind = ErrorKind.FORBIDDEN


class RateLimited(ModelyardError):
    """The caller (an API key at the gateway) is over its rate limit; it may try again after
    ``retry_after`` seconds. Unlike :class:`Overloaded`, the service is fine: this caller is not."""

    kind = ErrorKind.RATE_LIMITED

    def __init__(self, message: str, retry_after: float = 1.0, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class UnsupportedMediaType(ModelyardError):
    """The body's ``Content-Type`` is not one the endpoint accepts."""

    kind = ErrorKind.UNSUPPORTED_MEDIA_TYPE
