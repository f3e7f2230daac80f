"""The gateway's Prometheus series, on a registry per app.

With several worker processes (``gateway/workers.py``) each worker still counts in its own
registry and publishes snapshots to a shared folder; ``/metrics`` on any worker sums them
(``metrics_share.py``), so a scrape sees the whole gateway.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelyard.gateway import metrics_share

if TYPE_CHECKING:
    from modelyard.gateway.choice import Choice

__all__ = ["CONTENT_TYPE", "CountedLatency", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_VERSION = ["project", "model", "version"]


class GatewayMetrics:
    """Every series the gateway exports (see docs/gateway.md for the list and the Grafana board)."""

    def __init__(self, namespace: str = "modelyard_gateway", shared_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = shared_dir  # set when several workers share one /metrics
        r, ns = self.registry, namespace
        self.requests = CountedLatency(
            f"{ns}_requests", "Requests answered, by project, model, version and HTTP status code.",
            f"{ns}_request_duration_seconds", "Latency as the caller saw it, gateway hop included.",
            [*_VERSION, "code"],
        )  # fmt: skip
        self.replica_requests = CountedLatency(
            f"{ns}_replica_requests",
            "Requests sent to each replica (mirrors and retries included), by status.",
            f"{ns}_upstream_duration_seconds", "Time a replica took to answer one attempt.",
            [*_VERSION, "replica", "code"],
        )  # fmt: skip
        r.register(self.requests)
        r.register(self.replica_requests)
        self.in_flight = self._gauge("in_flight_requests", "Requests being handled now.")
        self.connections = self._gauge("open_connections", "Client connections open now.")
        self.replica_in_flight = Gauge(
            "replica_in_flight_requests",
            "Attempts sent to each replica and not yet answered (mirrored copies included).",
            [*_VERSION, "replica"], namespace=ns, registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "retries", "Attempts retried on another replica, by reason.",
            [*_VERSION, "reason"], namespace=ns, registry=r,
        )  # fmt: skip
        self.ejections = Counter(
            "ejections", "Times a replica was ejected after failing (passive health).",
            [*_VERSION, "replica"], namespace=ns, registry=r,
        )  # fmt: skip
        self.mirror_requests = Counter(
            "mirror_requests", "Mirrored copies by outcome: sent, failed, dropped (queue full).",
            [*_VERSION, "outcome"], namespace=ns, registry=r,
        )  # fmt: skip
        self.log_records = Counter(
            "log_records", "Inference-log records by outcome: shipped, dropped (buffer full), failed.",
            ["sink", "outcome"], namespace=ns, registry=r,
        )  # fmt: skip
        self.revision = self._gauge("routing_revision", "Routing-table revision in use (max over workers).")
        self.reloads = Counter("routing_reloads", "Routing-table reloads.", namespace=ns, registry=r)
        self.routing_errors = Counter(
            "routing_errors", "Routing-table polls that could not read it (the last table stays in use).",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.idle_polls = Counter(
            "idle_poll_rounds",
            "Non-blocking polls a worker ran instead of sleeping, one request in flight (idlepoll.py).",
            namespace=ns, registry=r,
        )  # fmt: skip

    def answered(self, project: str, model: str, version: str, code: int, seconds: float) -> None:
        """One request answered to the caller."""
        self.requests.add((project, model, version, str(code)), seconds)

    def answered_unrouted(self, code: int, seconds: float) -> None:
        """A request refused before routing (unknown names, 405, 413, overload): empty labels."""
        self.answered("", "", "", code, seconds)

    def attempted(self, choice: Choice, replica: str, code: str, seconds: float) -> None:
        """One attempt on a replica (code is the HTTP status, or "error" / "timeout")."""
        self.replica_requests.add((*choice.labels, replica, code), seconds)

    def retried(self, choice: Choice, reason: str) -> None:
        self.retries.labels(choice.route.project, choice.route.model, choice.version.version, reason).inc()

    def mirrored(self, choice: Choice, outcome: str) -> None:
        self.mirror_requests.labels(
            choice.route.project, choice.route.model, choice.version.version, outcome
        ).inc()

    def _gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, namespace="modelyard_gateway", registry=self.registry)

    def publish(self) -> None:
        """Write this worker's snapshot for the others' scrapes (no-op with a single worker)."""
        if self.shared_dir is not None:
            metrics_share.publish(self.registry, self.shared_dir, os.getpid())

    def render(self) -> bytes:
        """The exposition text: this worker's registry, plus every other worker's snapshot."""
        own = generate_latest(self.registry)
        if self.shared_dir is None:
            return own
        return metrics_share.merge(own, self.shared_dir, os.getpid())


class CountedLatency(Collector):
    """A counter and a latency histogram over the same events, as plain lists in a dict.

    The two busiest series pairs of the gateway (answers and attempts) are counted here rather than
    with prometheus_client's Counter and Histogram: those take a lock and several method calls per
    event, which measured as about a sixth of a hop's Python time. One event here is a dict lookup,
    a C bisect and two list additions; the exposition is built only when scraped. The histogram's
    labels are the counter's less the last one (the status code).
    """

    def __init__(
        self, counter: str, counter_help: str, histogram: str, histogram_help: str, labels: Sequence[str]
    ) -> None:
        self.names = (counter, counter_help, histogram, histogram_help)
        self.labels = list(labels)
        self.bounds = _BUCKETS
        # key -> [count per bucket (len(bounds) + 1, the last one +Inf)..., sum of seconds]
        self.cells: dict[tuple[str, ...], list[float]] = {}

    def add(self, key: tuple[str, ...], seconds: float) -> None:
        """One event under ``key`` (label values, in the order of ``labels``) that took ``seconds``."""
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = [0.0] * (len(self.bounds) + 2)
        cell[bisect.bisect_left(self.bounds, seconds)] += 1
        cell[-1] += seconds

    def count(self, key: tuple[str, ...]) -> float:
        """Events counted under ``key`` so far."""
        cell = self.cells.get(key)
        return 0.0 if cell is None else sum(cell[:-1])

    def collect(self) -> Iterator[Metric]:
        counter, counter_help, histogram, histogram_help = self.names
        counts = CounterMetricFamily(counter, counter_help, labels=self.labels)
        latency = HistogramMetricFamily(histogram, histogram_help, labels=self.labels[:-1])
        merged: dict[tuple[str, ...], list[float]] = {}
        for key, cell in list(self.cells.items()):
            counts.add_metric(list(key), sum(cell[:-1]))
            total = merged.setdefault(key[:-1], [0.0] * len(cell))
            for index, value in enumerate(cell):
                total[index] += value
        for key, cell in merged.items():
            running, buckets = 0.0, []
            for bound, value in zip([*map(floatToGoString, self.bounds), "+Inf"], cell[:-1], strict=True):
                running += value
                buckets.append((bound, running))
            latency.add_metric(list(key), buckets, cell[-1])
        yield counts
        yield latency
