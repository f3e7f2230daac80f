"""Load balancing: smooth weighted round robin between versions, round robin between replicas,
and passive health (replicas that keep failing are ejected for a while, then tried again).

Both balancers are plain objects owned by one worker's event loop: no locks, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["ReplicaPool", "SmoothWeighted"]


class SmoothWeighted:
    """nginx's smooth weighted round robin: exact shares over every window of ``sum(weights)`` picks,
    and the picks of a small weight are spread out (a 90/10 split never sends two requests of the
    10 in a row). Items of weight 0 are never picked."""

    __slots__ = ("_current", "_items", "_total", "_weights")

    def __init__(self, items: Sequence[str], weights: Sequence[int]) -> None:
        pairs = [(item, weight) for item, weight in zip(items, weights, strict=True) if weight > 0]
        self._items = [item for item, _ in pairs]
        self._weights = [weight for _, weight in pairs]
        self._current = [0] * len(pairs)
        self._total = sum(self._weights)

    def __bool__(self) -> bool:
        return self._total > 0

    def pick(self) -> str:
        """The next item; call only when the balancer is truthy (some weight is positive)."""
        best = 0
        current, weights = self._current, self._weights
        for index in range(len(current)):
            current[index] += weights[index]
            if current[index] > current[best]:
                best = index
        current[best] -= self._total
        return self._items[best]

    def carry_position(self, old: SmoothWeighted) -> None:
        """Continue ``old``'s sequence when the items and weights did not change."""
        if old._items == self._items and old._weights == self._weights:
            self._current = list(old._current)


class _Replica:
    __slots__ = ("ejected_until", "ejections", "failures", "in_flight", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures = 0  # consecutive
        self.ejected_until = 0.0
        self.ejections = 0  # consecutive ejections: each one lasts longer
        self.in_flight = 0


class ReplicaPool:
    """Round robin over a version's replicas, skipping ejected ones.

    Passive health: ``failure_threshold`` consecutive failures eject a replica for ``eject_s``
    seconds (doubling on each consecutive ejection, capped at ``max_eject_s``). When the time is
    up the replica gets live traffic again, which is the probe: one success clears its record, one
    more failure ejects it again at once. When every replica is ejected the pool still returns
    one — the least recently ejected — rather than failing the request outright.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        failure_threshold: int = 3,
        eject_s: float = 5.0,
        max_eject_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_eject: Callable[[str], None] | None = None,
    ) -> None:
        self._replicas = [_Replica(url) for url in urls]
        self._by_url = {replica.url: replica for replica in self._replicas}
        self._next = 0
        self._threshold = failure_threshold
        self._eject_s = eject_s
        self._max_eject_s = max_eject_s
        self._clock = clock
        self._on_eject = on_eject

    def __len__(self) -> int:
        return len(self._replicas)

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self._replicas]

    def carry_health(self, old: ReplicaPool) -> None:
        """Keep the health record of replicas that were already in ``old``."""
        for index, replica in enumerate(self._replicas):
            kept = old._by_url.get(replica.url)
            if kept is not None:
                self._replicas[index] = self._by_url[replica.url] = kept
        self._next = old._next % len(self._replicas) if self._replicas else 0

    def ejected(self) -> list[str]:
        now = self._clock()
        return [replica.url for replica in self._replicas if replica.ejected_until > now]

    def pick(self, exclude: Sequence[str] = ()) -> str | None:
        """The next healthy replica not in ``exclude``; None when there is no replica left to try."""
        count = len(self._replicas)
        if count == 0:
            return None
        now = self._clock()
        for step in range(count):
            replica = self._replicas[(self._next + step) % count]
            if replica.ejected_until <= now and replica.url not in exclude:
                self._next = (self._next + step + 1) % count
                return replica.url
        spare = [replica for replica in self._replicas if replica.url not in exclude]
        if not spare:
            return None
        return min(spare, key=lambda replica: replica.ejected_until).url

    def in_flight(self) -> list[tuple[str, int]]:
        """Each replica's URL and the attempts sent to it not yet answered (for the metrics)."""
        return [(replica.url, replica.in_flight) for replica in self._replicas]

    def sent(self, url: str) -> None:
        """An attempt went to ``url``; :meth:`returned` when it is answered or fails."""
        replica = self._by_url.get(url)
        if replica is not None:
            replica.in_flight += 1

    def returned(self, url: str) -> None:
        replica = self._by_url.get(url)
        if replica is not None:
            replica.in_flight -= 1

    def succeeded(self, url: str) -> None:
        replica = self._by_url.get(url)
        if replica is not None:
            replica.failures = 0
            replica.ejections = 0

    def failed(self, url: str) -> None:
        replica = self._by_url.get(url)
        if replica is None:
            return
        replica.failures += 1
        probing = replica.ejections > 0 and replica.ejected_until <= self._clock()
        if replica.failures >= self._threshold or probing:
            duration = min(self._eject_s * 2**replica.ejections, self._max_eject_s)
            replica.ejected_until = self._clock() + duration
            replica.ejections += 1
            replica.failures = 0
            if self._on_eject is not None:
                self._on_eject(url)
