"""The gateway's Prometheus series, on a registry per app.

With several worker processes (``gateway/workers.py``) each worker still counts in its own
registry and publishes snapshots to a shared folder; ``/metrics`` on any worker sums them
(``metrics_share.py``), so a scrape sees the whole gateway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelyard.gateway import metrics_share

if TYPE_CHECKING:
    from modelyard.gateway.router import Choice

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_VERSION = ["project", "model", "version"]


class GatewayMetrics:
    """Every series the gateway exports (see docs/gateway.md for the list and the Grafana board)."""

    def __init__(self, namespace: str = "modelyard_gateway", shared_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = shared_dir  # set when several workers share one /metrics
        r, ns = self.registry, namespace
        self.requests = Counter(
            "requests", "Requests answered, by project, model, version and HTTP status code.",
            [*_VERSION, "code"], namespace=ns, registry=r,
        )  # fmt: skip
        self.replica_requests = Counter(
            "replica_requests", "Requests sent to each replica (mirrors and retries included), by status.",
            [*_VERSION, "replica", "code"], namespace=ns, registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "request_duration_seconds", "Latency as the caller saw it, gateway hop included.",
            _VERSION, namespace=ns, registry=r, buckets=_BUCKETS,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "upstream_duration_seconds", "Time a replica took to answer one attempt.",
            [*_VERSION, "replica"], namespace=ns, registry=r, buckets=_BUCKETS,
        )  # fmt: skip
        self.in_flight = self._gauge("in_flight_requests", "Requests being handled now.")
        self.connections = self._gauge("open_connections", "Client connections open now.")
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

        # Labelled children looked up once: .labels() costs microseconds, and this is per request.
        self._answered: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._attempted: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def answered(self, project: str, model: str, version: str, code: int, seconds: float) -> None:
        """One request answered to the caller."""
        self._count(
            self._answered, self.requests, self.duration, (project, model, version, str(code)), seconds
        )

    def answered_unrouted(self, code: int, seconds: float) -> None:
        """A request refused before routing (unknown names, 405, 413, overload): empty labels."""
        self.answered("", "", "", code, seconds)

    def attempted(self, choice: Choice, replica: str, code: str, seconds: float) -> None:
        """One attempt on a replica (code is the HTTP status, or "error" / "timeout")."""
        key = (choice.route.project, choice.route.model, choice.version.version, replica, code)
        self._count(self._attempted, self.replica_requests, self.upstream_duration, key, seconds)

    @staticmethod
    def _count(
        cache: dict[tuple[str, ...], tuple[Any, Any]],
        counter: Counter,
        histogram: Histogram,
        key: tuple[str, ...],
        seconds: float,
    ) -> None:
        """Count one event under ``key`` and time it under ``key`` less its last label (the code)."""
        children = cache.get(key)
        if children is None:
            children = cache[key] = (counter.labels(*key), histogram.labels(*key[:-1]))
        children[0].inc()
        children[1].observe(seconds)

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
