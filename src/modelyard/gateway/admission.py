"""The checks a request's head passes before the gateway takes it on, whatever front end read it.

A model path (:func:`parse_path`, on the path as it was sent), the method that path takes, the
worker's in-flight limit, the declared body size; then the headers to forward and the request id,
the caller's or a new one. What fails is answered at once (405, 413, 503, 400) and counted as an
unrouted answer. Runs once per request, before its body is read: kept to one pass over the headers.

Not forwarded (RFC 9110 section 7.6.1): the hop-by-hop headers (``upstream.HOP_BY_HOP``) and every
header the request's ``Connection`` header names; nor any ``x-modelyard-*`` header, which only the
gateway itself sets towards a replica (``x-modelyard-mirror`` on a mirrored copy): a caller could
otherwise pass a request off as something the gateway made.
"""

from __future__ import annotations

import itertools
import os
import time
from urllib.parse import unquote

from modelyard.errors import InvalidInput, MethodNotAllowed, ModelyardError, Overloaded, PayloadTooLarge
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.upstream import HOP_BY_HOP, connection_named, without_named

__all__ = ["Admission", "parse_path"]

Headers = list[tuple[bytes, bytes]]


def parse_path(path: str) -> tuple[str, str, str, str | None] | None:
    """``(protocol, project, model, version)`` for a gateway model path, else None.

    ``path`` is the path as it was sent, percent-encoding and all: it is split into segments
    first and each segment decoded after, so an encoded ``/`` (``%2F``) can never make or move a
    segment boundary, nor ``%3Apredict`` select a protocol. A segment that decodes to something
    holding a ``/`` is refused (InvalidInput, 400): no project, model or version name has one.
    """
    if not path.startswith("/projects/"):
        return None
    protocol = "metadata"
    if path.endswith(":predict"):
        protocol, path = "tfserving", path[: -len(":predict")]
    elif path.endswith("/infer"):
        protocol, path = "v2", path[: -len("/infer")]
    parts = path.split("/")  # "", "projects", p, "models", m[, "versions", v]
    if len(parts) == 5 and parts[3] == "models" and parts[2] and parts[4]:
        found: tuple[str, str, str, str | None] = (protocol, parts[2], parts[4], None)
    elif (
        len(parts) == 7
        and parts[3] == "models"
        and parts[5] == "versions"
        and parts[2]
        and parts[4]
        and parts[6]
    ):
        found = (protocol, parts[2], parts[4], parts[6])
    else:
        return None
    return _decoded(found) if "%" in path else found


def _decoded(target: tuple[str, str, str, str | None]) -> tuple[str, str, str, str | None]:
    """``target``'s names percent-decoded, one segment at a time (see :func:`parse_path`)."""
    protocol, project, model, version = target
    return (
        protocol,
        _segment(project, "project"),
        _segment(model, "model"),
        None if version is None else _segment(version, "version"),
    )


def _segment(name: str, field: str) -> str:
    if "%" not in name:
        return name
    plain = unquote(name)
    if "/" in plain:
        raise InvalidInput(
            f"the {field} in the path, {name!r}, encodes a '/', which no {field} name holds", field="path"
        )
    return plain


class Admission:
    """One worker's head checks (see the module docstring); the service passes its in-flight count."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._ids = _RequestIds()
        self._targets: dict[str, tuple[str, str, str, str | None]] = {}

    def admit(
        self, method: str, path: str, headers: Headers, in_flight: int
    ) -> GatewayRequest | GatewayResponse | None:
        """The request (its body still to read), a refusal, or None when ``path`` is not a model
        path. ``headers`` may be reused."""
        target = self._targets.get(path)
        try:
            if target is None:
                target = parse_path(path)
                if target is not None and len(self._targets) < 4096:  # callers' paths repeat: parse once
                    self._targets[path] = target
            if target is None:
                return None
            wanted = "GET" if target[0] == "metadata" else "POST"
            if method != wanted:
                return self._wrong_method(method, path, wanted)
            if in_flight >= self.settings.max_in_flight:
                limit = self.settings.max_in_flight
                message = (
                    f"the gateway is at its limit of {limit} requests in flight per worker; retry shortly"
                )
                raise Overloaded("gateway", limit, message=message)
            forwarded, declared, request_id = _read_head(headers)
            if declared is not None and declared > self.settings.max_body_bytes:
                raise PayloadTooLarge(declared, self.settings.max_body_bytes)
        except ModelyardError as exc:
            return self.refused(error_response(exc))
        if request_id is None:
            request_id = self._ids()
            forwarded.append((b"x-request-id", request_id.encode()))
        protocol, project, model, version = target
        return GatewayRequest(
            protocol,
            project,
            model,
            version,
            method,
            forwarded,
            b"",
            request_id,
            time.time(),
            time.perf_counter(),
        )

    def _wrong_method(self, method: str, path: str, wanted: str) -> GatewayResponse:
        refused = error_response(
            MethodNotAllowed(f"method {method} is not allowed on {path} (use {wanted})", field="method")
        )
        refused.headers.append((b"allow", wanted.encode()))
        return self.refused(refused)

    def refused(self, response: GatewayResponse) -> GatewayResponse:
        """Count an answer given before routing (405, 413, 503) and return it."""
        self.metrics.answered_unrouted(response.status, 0.0)
        return response


def _read_head(headers: Headers) -> tuple[Headers, int | None, str | None]:
    """One pass over a request's headers: those to forward (see the module docstring; an unusable
    x-request-id left out too), the declared body size, the caller's request id."""
    forwarded: Headers = []
    declared = request_id = None
    named: frozenset[bytes] = frozenset()
    for header in headers:
        name = header[0]
        if name in HOP_BY_HOP:
            if name == b"content-length":
                if not header[1].isdigit():
                    raise InvalidInput(
                        "Content-Length must be a non-negative integer", field="content-length"
                    )
                declared = int(header[1])
            elif name == b"connection":
                named = named | connection_named(header[1])
            continue
        if name.startswith(b"x-modelyard-"):
            continue  # the gateway's own vocabulary: never taken from a caller
        if name == b"x-request-id":
            if request_id is not None or not 0 < len(header[1]) <= 200:
                continue  # a second one, or one that cannot be used: ours replaces it
            request_id = header[1].decode("latin-1")
        forwarded.append(header)
    if named:  # rare: "close" and "keep-alive", the usual values, name nothing to drop
        forwarded = without_named(forwarded, named)
        if b"x-request-id" in named:
            request_id = None  # not forwarded, so not the replica's id either: ours replaces it
    return forwarded, declared, request_id


class _RequestIds:
    """Unique request ids, 32 hex digits like a UUID: a random per-process prefix and a counter.

    A tenth of the cost of ``uuid4()``, which was a visible share of the gateway's per-request work.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"
