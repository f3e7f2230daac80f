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

__all__ = ["GatewayRequest", "GatewayResponse", "error_response"]

JSON = (b"content-type", b"application/json")


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


@dataclasses.dataclass(slots=True)
class GatewayResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: str = ""  # the version that answered
    replica: str = ""
    route: ModelRoute | None = None
    error: str | None = None
    mirrors: Sequence[Choice] = ()


def error_response(
    error: ModelyardError, version: str = "", route: ModelRoute | None = None
) -> GatewayResponse:
    """A domain error as an answer: the one status table and error body of every modelyard service."""
    headers = [JSON, *((k.encode(), v.encode()) for k, v in error_headers(error).items())]
    return GatewayResponse(status_for(error), headers, error_body(error), version, "", route, error.message)
