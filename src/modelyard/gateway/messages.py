"""What crosses the gateway core: a request as the front end read it, an answer to send back."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelyard.errors import ModelyardError
from modelyard.web.errors import error_body, error_headers, status_for

if TYPE_CHECKING:
    from modelyard.gateway.router import Choice
    from modelyard.routing.table import ModelRoute

__all__ = [
    "DEPRECATED_VERSION_HEADER",
    "ROUTE_VERSION_HEADER",
    "GatewayRequest",
    "GatewayResponse",
    "VersionHeaders",
    "error_response",
]

JSON = (b"content-type", b"application/json")
# The route version that answered (``/versions/{v}`` of the gateway's paths). Not the registry's
# version number nor the package manifest's version: docs/versions.md tells the three apart.
ROUTE_VERSION_HEADER = b"x-modelyard-route-version"
# The same value under its old name, still sent for one release so that scripts counting a split by
# it keep working; deprecated, to be dropped in the release after the rename.
DEPRECATED_VERSION_HEADER = b"x-modelyard-version"


@dataclasses.dataclass(slots=True)
class GatewayRequest:
    """A model request whose head passed the gateway's checks; the front end then reads the body
    (when :attr:`expects_body`) into ``body`` and hands the request on."""

    protocol: str  # "v2", "tfserving" or "metadata" (keys of router.UPSTREAM_PATHS)
    project: str
    model: str
    version: str | None  # None: pick by weight
    method: str
    headers: list[tuple[bytes, bytes]]  # lower-case names, to forward (hop-by-hop ones left out)
    body: bytes
    request_id: str
    received: float = dataclasses.field(default_factory=time.time)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def expects_body(self) -> bool:
        return self.protocol != "metadata"


@dataclasses.dataclass(frozen=True, slots=True)
class VersionHeaders:
    """The answer headers that name a route version, made once per version when the routing table
    loads (:class:`~modelyard.gateway.router.Choice`) so that no answer encodes them again.

    ``pairs`` is what the ASGI front end sends; ``lines`` the same headers as raw HTTP/1.1 lines,
    which ``http1.py`` appends to an answer's head as they are.
    """

    pairs: tuple[tuple[bytes, bytes], ...]
    lines: bytes

    @classmethod
    def of(cls, version: str) -> VersionHeaders:
        value = version.encode("ascii")  # table.NAME_PATTERN: route versions are ASCII
        pairs = ((ROUTE_VERSION_HEADER, value), (DEPRECATED_VERSION_HEADER, value))
        return cls(pairs, b"".join(name + b": " + value + b"\r\n" for name, value in pairs))


@dataclasses.dataclass(slots=True)
class GatewayResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: str = ""  # the route version that answered (metrics, inference logs)
    replica: str = ""
    route: ModelRoute | None = None
    error: str | None = None
    mirrors: Sequence[Choice] = ()
    version_headers: VersionHeaders | None = None  # ``version``'s headers, sent with the answer


def error_response(error: ModelyardError, choice: Choice | None = None) -> GatewayResponse:
    """A domain error as an answer: the one status table and error body of every modelyard service.

    ``choice``: the route version the request had been given to, when it got that far; the answer
    then names it like a replica's answer would.
    """
    headers = [JSON, *((k.encode(), v.encode()) for k, v in error_headers(error).items())]
    response = GatewayResponse(status_for(error), headers, error_body(error), error=error.message)
    if choice is not None:
        response.version, response.route = choice.version.version, choice.route
        response.version_headers = choice.version_headers
    return response
