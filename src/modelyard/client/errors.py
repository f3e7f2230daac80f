"""The inference client's typed errors.

Every error the client raises is a :class:`ClientError`. Each class also subclasses the matching
domain error of :mod:`modelyard.errors` where there is one, so ``except InvalidInput`` catches a
``400`` from a server exactly as it catches the same mistake made in-process::

    ClientError (ModelyardError)        .status .kind .field .message .request_id .attempts
    ├── InvalidArgument      (InvalidInput, ValueError)  a bad argument; nothing was sent
    ├── InvalidRequest       (InvalidInput)              400
    ├── NotFoundError        (ModelNotFound, NotFound)   404: unknown project, model or version
    ├── PayloadTooLargeError (PayloadTooLarge)           413
    ├── AuthenticationError  (Unauthenticated)           401: no API key, or one that is not valid
    ├── PermissionDeniedError (Forbidden)                403: a key that may not call this model
    ├── Unavailable                                      503 or 429, after the retries
    │   ├── OverloadedError  (Overloaded)                kind "overloaded": the queue is full
    │   ├── RateLimitedError (RateLimited)               kind "rate_limited": this key is over its rate
    │   └── NotReadyError    (ModelNotReady)             kind "not_ready": loading or draining
    ├── Timeout              (DeadlineExceeded)          504 after the retries, or no answer in time
    ├── ServerError                                      any other 5xx
    │   ├── ModelFailedError (ModelError)                kind "model_error": the model's code raised
    │   └── BadGatewayError  (BadGateway)                502 after the retries: no replica answered
    └── ConnectionFailed                                 nothing answered, after the retries

Other statuses (405, 409, ...) are raised as a plain :class:`ClientError`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from modelyard.errors import (
    BadGateway,
    DeadlineExceeded,
    ErrorKind,
    Forbidden,
    InvalidInput,
    ModelError,
    ModelNotFound,
    ModelNotReady,
    ModelyardError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
)

__all__ = [
    "AuthenticationError",
    "BadGatewayError",
    "ClientError",
    "ConnectionFailed",
    "InvalidArgument",
    "InvalidRequest",
    "ModelFailedError",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "Timeout",
    "Unavailable",
    "error_from_response",
]


class ClientError(ModelyardError):
    """Base of every error the inference client raises.

    ``status`` is the HTTP status (None when no answer came), ``kind`` the server's error kind
    (else the class's default), ``field`` the part of the request the server blamed, ``message`` its
    message, ``request_id`` the ``x-request-id`` of the call, ``attempts`` how many tries were made,
    ``target`` and ``version`` what the call was for (None for server-level calls).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: ErrorKind | None = None,
        field: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        target: str | None = None,
        version: str | None = None,
    ) -> None:
        # The domain bases have their own constructor signatures (ModelNotFound(name, version),
        # Overloaded(name, queue_size), ...): go straight to the common root instead.
        ModelyardError.__init__(self, message, field=field)
        self.status = status
        if kind is not None:
            self.kind = kind
        self.request_id = request_id
        self.attempts = attempts
        self.target = target
        self.version = version
        self._fill_domain_fields()

    def _fill_domain_fields(self) -> None:
        """Set the attributes the matching domain error promises (subclasses override)."""

    def __str__(self) -> str:
        context = [
            f"HTTP {self.status}" if self.status is not None else "",
            f"field {self.field}" if self.field else "",
            f"request id {self.request_id}" if self.request_id else "",
            f"after {self.attempts} attempts" if self.attempts > 1 else "",
        ]
        details = ", ".join(part for part in context if part)
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, kind={self.kind.value!r},"
            f" field={self.field!r}, request_id={self.request_id!r})"
        )


class InvalidArgument(ClientError, InvalidInput, ValueError):
    """An argument the client refused before sending anything; ``field`` names the argument."""


class InvalidRequest(ClientError, InvalidInput):
    """The server refused the request as invalid (400); ``field`` names the part at fault."""


class NotFoundError(ClientError, ModelNotFound, NotFound):
    """No such project, model or version (404). ``name`` is the target, as ModelNotFound has it."""

    def _fill_domain_fields(self) -> None:
        self.name = self.target or ""


class PayloadTooLargeError(ClientError, PayloadTooLarge):
    """The request body was over the server's limit (413); ``size``/``limit`` are -1 when unstated."""

    def _fill_domain_fields(self) -> None:
        stated = re.search(r"of (\d+) bytes exceeds the limit of (\d+) bytes", self.message)
        self.size, self.limit = (int(stated[1]), int(stated[2])) if stated else (-1, -1)


class Unavailable(ClientError):
    """The server could not take the request (503 or 429) on any attempt.

    ``retry_after`` is the last ``Retry-After`` the server asked for, in seconds (0.0 when none).
    """

    kind = ErrorKind.NOT_READY
    retry_after: float = 0.0


class OverloadedError(Unavailable, Overloaded):
    """The model's queue was full on every attempt (503, kind ``overloaded``)."""

    kind = ErrorKind.OVERLOADED


class NotReadyError(Unavailable, ModelNotReady):
    """The model was loading, failed or draining (503, kind ``not_ready``)."""

    def _fill_domain_fields(self) -> None:
        self.name = self.target or ""
        stated = re.search(r"\(state: (\w+)\)", self.message)
        self.state = stated[1] if stated else "unknown"


class Timeout(ClientError, DeadlineExceeded):
    """No answer within the client's ``timeout`` (``status`` None), or 504 on every attempt."""


class ServerError(ClientError):
    """The server failed (5xx other than 503/504, or a malformed answer with its status)."""


class ModelFailedError(ServerError, ModelError):
    """The model's own code raised (500, kind ``model_error``); the message is the model's."""

    kind = ErrorKind.MODEL_ERROR

    def _fill_domain_fields(self) -> None:
        stated = re.search(r" failed in (\w+):", self.message)
        self.hook = stated[1] if stated else "unknown"


class BadGatewayError(ServerError, BadGateway):
    """The gateway reached no replica, or none answered HTTP (502), on every attempt."""


class AuthenticationError(ClientError, Unauthenticated):
    """No API key where the gateway needs one, or one it does not know (401)."""


class PermissionDeniedError(ClientError, Forbidden):
    """The API key belongs to another project (403)."""


class RateLimitedError(Unavailable, RateLimited):
    """The API key is over its rate limit (429), after the retries."""


class ConnectionFailed(ClientError):
    """Nothing answered: connection refused, reset or dropped before a response, on every attempt."""


def _kind(value: Any) -> ErrorKind | None:
    try:
        return ErrorKind(value)
    except ValueError:
        return None


def error_class(status: int, kind: ErrorKind | None) -> type[ClientError]:
    """The error class for an HTTP error status and the kind the body gave (if any)."""
    if status in (429, 503):
        if kind is ErrorKind.OVERLOADED or (kind is None and status == 429):
            return OverloadedError
        if kind is ErrorKind.RATE_LIMITED:
            return RateLimitedError
        return NotReadyError if kind is ErrorKind.NOT_READY else Unavailable
    if status >= 500:
        if status == 504:
            return Timeout
        if status == 502:
            return BadGatewayError
        return ModelFailedError if kind is ErrorKind.MODEL_ERROR else ServerError
    by_status = {
        400: InvalidRequest,
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
    }
    return {**by_status, 413: PayloadTooLargeError}.get(status, ClientError)


def error_from_response(
    status: int,
    body: bytes,
    *,
    request_id: str | None,
    attempts: int,
    target: str | None,
    version: str | None,
) -> ClientError:
    """The typed error for an error answer: the ``{"error", "kind", "field"?}`` body when there is
    one, else the status and the start of whatever the body was (a proxy's HTML page, say)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        kind = _kind(doc.get("kind"))
        field = doc.get("field") if isinstance(doc.get("field"), str) else None
        message: str = doc["error"]
    else:
        kind, field = None, None
        text = body[:200].decode(errors="replace").strip()
        message = f"HTTP {status}" + (f": {text}" if text else "")
    cls = error_class(status, kind)
    return cls(
        message,
        status=status,
        kind=kind,
        field=field,
        request_id=request_id,
        attempts=attempts,
        target=target,
        version=version,
    )
