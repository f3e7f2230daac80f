"""Per-project API keys at the gateway: who may send a project inference requests, and how fast.

A project with keys in the routing table (``RoutingTable.keyed``: revoked keys count, so revoking a
project's last key never opens it; the table comes with the polls the worker makes anyway, so
there is no database call per request) takes a request only with one of its active keys
(``RoutingTable.keys``), as ``Authorization: Bearer <key>``:

- no key, or one that is not an active key of any project: 401 (kind ``unauthenticated``);
- a key of another project: 403 (kind ``forbidden``);
- a key over its rate limit: 429 (kind ``rate_limited``) with ``Retry-After``.

A project without keys is open, as before (``modelyard key forget`` reopens one). The
``Authorization`` header of a keyed project's request is never forwarded: a replica has no use for
the key and no business seeing it.

The check is one SHA-256 of the presented key and a dict lookup. Rate limits are token buckets,
one per key *per worker*: each worker allows ``rate_per_s / workers`` a second and a burst of
``burst / workers`` (at least one), so the gateway as a whole allows about what the key says
while connections are spread evenly over its workers (the kernel does so, per connection:
``SO_REUSEPORT``). A client on a single keep-alive connection reaches one worker and gets that
worker's share; the limit is approximate by design, in exchange for no shared state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from modelyard.errors import Forbidden, ModelyardError, RateLimited, Unauthenticated
from modelyard.gateway.messages import GatewayRequest
from modelyard.routing.keys import hash_key
from modelyard.routing.table import KeyGrant, RoutingTable

__all__ = ["KeyCheck"]

_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "


class _Bucket:
    """A token bucket: ``capacity`` requests at once, refilled at ``rate`` a second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class KeyCheck:
    """One worker's API-key check; see the module docstring. ``workers``: how many worker
    processes share each key's rate limit."""

    def __init__(self, workers: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = max(1, workers)
        self.clock = clock
        self._table: RoutingTable | None = None
        self._grants: dict[str, KeyGrant] = {}
        self._projects: frozenset[str] = frozenset()
        self._buckets: dict[str, _Bucket] = {}  # by key hash, made on a key's first request

    def check(self, request: GatewayRequest, table: RoutingTable) -> ModelyardError | None:
        """The refusal for ``request`` under ``table``'s keys, or None to let it through (then
        without its ``Authorization`` header when its project has keys)."""
        if table is not self._table:
            self._load(table)
        if request.project not in self._projects:
            return None
        presented = _take_bearer(request.headers)
        if presented is None:
            return Unauthenticated(
                f"project '{request.project}' needs an API key: send Authorization: Bearer <key>",
                field="authorization",
            )
        digest = hash_key(presented)
        grant = self._grants.get(digest)
        if grant is None:
            return Unauthenticated("the API key is not valid (unknown or revoked)", field="authorization")
        if grant.project != request.project:
            return Forbidden(
                f"this API key is not valid for project '{request.project}'", field="authorization"
            )
        if grant.rate_per_s is None:
            return None
        return self._limit(digest, grant)

    def _limit(self, digest: str, grant: KeyGrant) -> RateLimited | None:
        now = self.clock()
        bucket = self._buckets.get(digest)
        if bucket is None:
            bucket = self._buckets[digest] = self._bucket(grant, now)
        wait = bucket.take(now)
        if not wait:
            return None
        return RateLimited(
            f"this API key is over its rate limit of {grant.rate_per_s:g} requests a second",
            retry_after=wait,
            field="authorization",
        )

    def _bucket(self, grant: KeyGrant, now: float) -> _Bucket:
        assert grant.rate_per_s is not None
        return _Bucket(grant.rate_per_s / self.workers, max(1.0, grant.burst / self.workers), now)

    def _load(self, table: RoutingTable) -> None:
        """Take ``table``'s keys; a key whose limits did not change keeps its bucket (a table
        change elsewhere must not refill every bucket)."""
        grants = dict(table.keys)
        self._buckets = {
            digest: bucket
            for digest, bucket in self._buckets.items()
            if digest in grants and grants[digest] == self._grants.get(digest)
        }
        self._grants = grants
        self._projects = table.keyed | {grant.project for grant in grants.values()}
        self._table = table


def _take_bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key of the first ``Authorization: Bearer`` header, every ``Authorization`` header
    removed from ``headers`` (none is forwarded); None when there is no bearer key."""
    found: bytes | None = None
    index = 0
    while index < len(headers):
        name, value = headers[index]
        if name != _AUTHORIZATION:
            index += 1
            continue
        del headers[index]
        if found is None and value[:7].lower() == _BEARER:
            found = value[7:].strip() or None
    return found
