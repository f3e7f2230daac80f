"""A worker's periodic metrics work: the values kept off the request path, and the shared snapshot.

The gauges (requests in flight, open connections, each replica's attempts in flight) and the idle
poller's round count are sampled here, at each routing poll, rather than moved per request: a
gauge update takes a lock, too dear for the hot path. The snapshot that the other workers'
``/metrics`` add up (``metrics_share.py``) takes about 2 ms to make, so it is published about once
a second rather than at every poll; scrapes come every 15 s or so anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from modelyard.gateway.idlepoll import IdlePoller
from modelyard.gateway.metrics import GatewayMetrics

__all__ = ["PUBLISH_INTERVAL_S", "MetricsPublisher"]

PUBLISH_INTERVAL_S = 1.0


class MetricsPublisher:
    """Samples a worker's gauges into ``metrics`` and publishes its snapshot; see the module docstring."""

    def __init__(self, metrics: GatewayMetrics, idle_poller: IdlePoller) -> None:
        self.metrics = metrics
        self.idle_poller = idle_poller
        self._polls_counted = 0  # idle-poll rounds already added to the metric
        self._published = 0.0  # time.monotonic() of the last snapshot

    def sample(
        self, in_flight: int, connections: int, replica_loads: Iterable[tuple[str, str, str, str, int]] = ()
    ) -> None:
        """At each routing poll: set the gauges (``replica_loads``: each replica routed to, with the
        attempts it has in flight); publish when the last snapshot is a second old."""
        self.metrics.in_flight.set(in_flight)
        self.metrics.connections.set(connections)
        self.metrics.replica_in_flight.clear()  # a replica no longer routed to drops out
        for *labels, load in replica_loads:
            self.metrics.replica_in_flight.labels(*labels).set(load)
        self._count_idle_polls()
        if time.monotonic() - self._published >= PUBLISH_INTERVAL_S:
            self._published = time.monotonic()
            self.metrics.publish()

    def publish_last(self) -> None:
        """When the worker stops: its last counts stay in the gateway's sum."""
        self._count_idle_polls()
        self.metrics.publish()

    def _count_idle_polls(self) -> None:
        rounds = self.idle_poller.rounds
        self.metrics.idle_polls.inc(rounds - self._polls_counted)
        self._polls_counted = rounds
