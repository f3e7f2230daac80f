"""Prometheus metrics, one registry per app (no global state).

Names follow Prometheus conventions (seconds, ``_total``) and Triton's semantics, so dashboards and
autoscaling rules port with a rename: avg batch size = inference_count / inference_exec_count.

What a capacity profiler or an autoscaler reads is here too: the process's CPU seconds, resident
memory, open file descriptors (prometheus_client's standard ``process_*`` series) and OS threads,
and per model the requests in flight and the time its model thread(s) spent computing
(``rate(modelyard_model_busy_seconds_total[1m])`` is the fraction of a thread kept busy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """All series the model server exports, registered on a private registry."""

    def __init__(self, namespace: str = "modelyard") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.requests = Counter(
            "requests", "Requests by model, protocol and HTTP status code.",
            ["model", "protocol", "code"], namespace=ns, registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "request_duration_seconds", "End-to-end request latency.",
            ["model", "protocol"], namespace=ns, registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch_size = Histogram(
            "batch_size",
            "Rows per executed batch.",
            ["model"],
            namespace=ns,
            registry=r,
            buckets=_BATCH_BUCKETS,
        )
        self.batch_duration = Histogram(
            "batch_duration_seconds", "Time to run one batch through predict.",
            ["model"], namespace=ns, registry=r, buckets=_LATENCY_BUCKETS,
        )  # fmt: skip
        self.inference_count = Counter(
            "inference_count",
            "Inferences (a batch of n counts n).",
            ["model", "version"],
            namespace=ns,
            registry=r,
        )
        self.exec_count = Counter(
            "inference_exec_count",
            "Model executions (batches).",
            ["model", "version"],
            namespace=ns,
            registry=r,
        )
        self.queue_depth = Gauge(
            "queue_depth", "Requests waiting for the model.", ["model"], namespace=ns, registry=r
        )
        self.model_healthy = Gauge(
            "model_healthy",
            "1 while the model is READY and its last health() check passed, else 0.",
            ["model", "version"],
            namespace=ns,
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.in_flight = Gauge(
            "requests_in_flight", "Requests being handled.", ["protocol"], namespace=ns, registry=r
        )
        self.model_in_flight = Gauge(
            "model_requests_in_flight",
            "Requests for the model between arrival and answer (queued or computing).",
            ["model"],
            namespace=ns,
            registry=r,
        )
        self.model_busy = Counter(
            "model_busy_seconds",
            "Time the model's thread(s) spent running batches (rate: the fraction of a thread busy).",
            ["model"],
            namespace=ns,
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, _resident_memory_bytes, _open_fds...
        Gauge("process_threads", "OS threads of the server process.", namespace=ns, registry=r).set_function(
            _os_threads
        )

    def observe_request(self, model: str, protocol: str, code: int, seconds: float) -> None:
        key = (model, protocol, code)
        children = self._request_children.get(key)
        if children is None:  # label lookup takes a lock; cache the children for the hot path
            children = (
                self.requests.labels(model, protocol, str(code)),
                self.request_duration.labels(model, protocol),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, version: str, rows: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(rows)
        self.batch_duration.labels(model).observe(seconds)
        self.inference_count.labels(model, version).inc(rows)
        self.exec_count.labels(model, version).inc()
        self.model_busy.labels(model).inc(seconds)

    def track_queue(self, model: str, depth: Callable[[], float]) -> None:
        """Read queue depth lazily at scrape time: no per-request cost."""
        self.queue_depth.labels(model).set_function(depth)

    def track_in_flight(self, model: str, in_flight: Callable[[], float]) -> None:
        """Read a model's requests in flight at scrape time (the runtime counts them)."""
        self.model_in_flight.labels(model).set_function(in_flight)

    def track_health(self, model: str, version: str, healthy: Callable[[], float]) -> None:
        """Read a model version's health verdict at scrape time (the poller only stores it)."""
        self.model_healthy.labels(model, version).set_function(healthy)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _os_threads() -> float:
    """Threads of this process as the OS counts them (native ones, e.g. onnxruntime's, included)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            return float(stat.read().rsplit(b")", 1)[1].split()[17])  # field 20: num_threads
    except (OSError, IndexError, ValueError):  # not Linux: the threads Python knows of
        return float(threading.active_count())
