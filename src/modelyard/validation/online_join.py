"""The join window: answers waiting for their counterpart, bounded in records, bytes and age.

A primary answer waits for the mirrored copies of the same request (there may be several mirrored
versions, or none: a canary split or a ``mirror_fraction`` below 1 leaves most primaries alone, so
a primary that leaves the window unjoined is not a failure). A mirrored answer that arrives first
waits for its primary; if it leaves the window unjoined, its primary never came: that is what
``unmatched`` counts. Whatever the two streams do, the window holds at most ``max_records``
answers of each role and ``max_bytes`` of bodies, and none longer than ``max_age_s``.

Answers wait as the body text the gateway logged, never decoded: a body is decoded when its pair
meets, compared, and dropped, so the bodies' length is what the window holds. A body longer than
``max_body_bytes`` is not kept at all (the answer waits without it, marked ``oversized``).

A request is known by its id *and* the hash of its body (``request_hash``, logged with the
payloads): a client may send the same ``x-request-id`` with different requests, and only answers to
the same request may pair. A record without a request hash is known by its id alone; should a
second primary arrive with the same id while the first waits, the two cannot be told apart: both
are dropped and counted ``ambiguous``, and their mirrored copies end unmatched.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from modelyard.validation.online_answers import Answer, decode_answer, hash_answer

__all__ = ["JoinLimits", "JoinWindow", "Key", "Pending"]

Key = tuple[str, str, str, str | None]  # (project, model, request id, request hash)


@dataclasses.dataclass(frozen=True)
class JoinLimits:
    """How much the join window may hold (per role), for how long, and the largest body it keeps."""

    max_records: int = 50_000
    max_bytes: int = 32 << 20
    max_age_s: float = 60.0
    max_body_bytes: int = 4 << 20


class Pending:
    """One logged answer, as much of it as a comparison needs (its body still as text)."""

    __slots__ = ("arrived", "body", "digest", "latency_ms", "oversized", "protocol", "status", "version")

    def __init__(
        self,
        version: str,
        status: int,
        latency_ms: float,
        protocol: str,
        digest: str | None,
        body: str | None,
        arrived: float,
        max_body: int = JoinLimits.max_body_bytes,
    ) -> None:
        self.version = version
        self.status = status
        self.latency_ms = latency_ms
        self.protocol = protocol
        self.digest = digest
        self.oversized = body is not None and len(body) > max_body
        self.body = None if self.oversized else body
        self.arrived = arrived

    @property
    def size(self) -> int:
        return len(self.body) if self.body else 0

    def answer(self) -> Answer | None:
        """The body as arrays, decoded afresh (nothing decoded is kept: see the module doc)."""
        return decode_answer(self.body, self.protocol)

    def hashed(self) -> Answer | None:
        return hash_answer(self.digest) if self.digest else None


class JoinWindow:
    """Primaries by request, mirrored answers by request, each in arrival order."""

    def __init__(self, limits: JoinLimits | None = None) -> None:
        self.limits = limits or JoinLimits()
        self.primaries: OrderedDict[Key, Pending] = OrderedDict()
        self.mirrors: OrderedDict[Key, list[Pending]] = OrderedDict()
        self._mirror_count = 0
        self._primary_bytes = 0
        self._mirror_bytes = 0
        self.evicted_primaries = 0
        self.ambiguous = 0  # primaries dropped: a request id repeated with no request hash

    def __len__(self) -> int:
        return len(self.primaries) + self._mirror_count

    def add_primary(self, key: Key, entry: Pending) -> list[Pending]:
        """Keep ``entry`` for mirrored answers still to come; returns those that came first."""
        old = self.primaries.pop(key, None)
        if old is not None:
            self._primary_bytes -= old.size
            if key[3] is None:  # which request would a later mirrored answer be of? Neither.
                self.ambiguous += 2
                return []
            # The same id and the same request bytes: either answer is one to the same input.
        self.primaries[key] = entry
        self._primary_bytes += entry.size
        waiting = self.mirrors.pop(key, None)
        if waiting is None:
            return []
        self._mirror_count -= len(waiting)
        self._mirror_bytes -= sum(mirror.size for mirror in waiting)
        return waiting

    def add_mirror(self, key: Key, entry: Pending) -> Pending | None:
        """The primary ``entry`` answers beside, or None (then ``entry`` waits for it)."""
        primary = self.primaries.get(key)
        if primary is not None:
            return primary
        waiting = self.mirrors.get(key)
        if waiting is None:
            self.mirrors[key] = [entry]
        else:
            waiting.append(entry)
        self._mirror_count += 1
        self._mirror_bytes += entry.size
        return None

    def evict(self, now: float) -> list[tuple[Key, Pending]]:
        """Drop what is too old or beyond the limits; returns the mirrored answers dropped unjoined."""
        limits = self.limits
        dropped: list[tuple[Key, Pending]] = []
        oldest = now - limits.max_age_s
        while self.mirrors:
            key, waiting = next(iter(self.mirrors.items()))
            if (
                waiting[0].arrived >= oldest
                and self._mirror_count <= limits.max_records
                and self._mirror_bytes <= limits.max_bytes
            ):
                break
            self.mirrors.popitem(last=False)
            self._mirror_count -= len(waiting)
            self._mirror_bytes -= sum(mirror.size for mirror in waiting)
            dropped.extend((key, mirror) for mirror in waiting)
        while self.primaries:
            primary = next(iter(self.primaries.values()))
            if (
                primary.arrived >= oldest
                and len(self.primaries) <= limits.max_records
                and self._primary_bytes <= limits.max_bytes
            ):
                break
            self.primaries.popitem(last=False)
            self._primary_bytes -= primary.size
            self.evicted_primaries += 1
        return dropped

    @property
    def bytes(self) -> int:
        """Body bytes held, both roles."""
        return self._primary_bytes + self._mirror_bytes
