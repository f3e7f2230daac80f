"""Where one request goes: a route version, chosen for it from the table the worker loaded.

A :class:`Choice` is made once per version when a routing table loads (``router.py``) and carries
what every request to that version needs already worked out: its metric labels, the replica-side
path per protocol and the answer's :class:`VersionHeaders`. The router hands it to the exchange,
answers carry it (``messages.py``) and the metrics label by it; it sits below all of them.
"""

from __future__ import annotations

import dataclasses

from modelyard.gateway.balance import ReplicaPool
from modelyard.routing.table import ModelRoute, VersionRoute

__all__ = [
    "DEPRECATED_VERSION_HEADER",
    "ROUTE_VERSION_HEADER",
    "UPSTREAM_PATHS",
    "Choice",
    "VersionHeaders",
]

# The replica-side path of each gateway endpoint; {target} is the model's name on the replica.
UPSTREAM_PATHS = {
    "v2": "/v2/models/{target}/infer",
    "tfserving": "/v1/models/{target}:predict",
    "metadata": "/v2/models/{target}",
}
# The route version that answered (``/versions/{v}`` of the gateway's paths). Not the registry's
# version number nor the package manifest's version: docs/versions.md tells the three apart.
ROUTE_VERSION_HEADER = b"x-modelyard-route-version"
# The same value under its old name, still sent for one release so that scripts counting a split by
# it keep working; deprecated, to be dropped in the release after the rename.
DEPRECATED_VERSION_HEADER = b"x-modelyard-version"


@dataclasses.dataclass(frozen=True, slots=True)
class VersionHeaders:
    """The answer headers that name a route version, made once per version when the routing table
    loads (with its :class:`Choice`) so that no answer encodes them again.

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


class Choice:
    """Where one request goes: the route (for options), the version and its replica pool.

    Made once per version when a table is loaded, with what every request to it needs already
    worked out (metric labels, the replica-side path per protocol, the answer's version headers),
    so routing allocates nothing.
    """

    __slots__ = ("labels", "paths", "pool", "route", "version", "version_headers")

    def __init__(self, route: ModelRoute, version: VersionRoute, pool: ReplicaPool) -> None:
        self.route = route
        self.version = version
        self.pool = pool
        self.labels = (route.project, route.model, version.version)
        target = version.target or route.model
        self.paths = {protocol: path.format(target=target) for protocol, path in UPSTREAM_PATHS.items()}
        self.version_headers = VersionHeaders.of(version.version)
