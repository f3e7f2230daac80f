"""What crosses the gateway core: a request as the front end read it, an answer to send back.

The route version a request was given to (:class:`~modelyard.gateway.choice.Choice`) and the
headers naming it live one module down, in ``choice.py``: the router makes them, answers carry them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelyard.errors import ModelyardError
from modelyard.gateway.choice import Choice, VersionHeaders
from modelyard.web.errors import error_body, error_headers, status_for

if TYPE_CHECKING:
    from modelyard.routing.table import ModelRoute

__all__ = ["GatewayRequest", "GatewayResponse", "error_response"]

JSON = (b"content-type", b"application/json")


@dataclasses.dataclass(slots=True)
class GatewayRequest:
    """A model request whose head passed the gateway's checks; the front end then reads the body
    (when :attr:`expects_body`) into ``body`` and hands the request on."""

    protocol: str  # "v2", "tfserving" or "metadata" (keys of choice.UPSTREAM_PATHS)
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
