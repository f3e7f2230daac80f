"""Several workers' metrics summed into one exposition (gateway/metrics_share.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.metrics_share import merge, publish


def values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def worker(requests: int, in_flight: int, revision: int, label: str = "mail") -> GatewayMetrics:
    metrics = GatewayMetrics()
    for _ in range(requests):
        metrics.answered(label, "spam", "v1", 200, 0.002)
    metrics.in_flight.set(in_flight)
    metrics.revision.set(revision)
    return metrics


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(proc.stdout)


def test_counters_and_histograms_add_up_gauges_only_for_live_workers(tmp_path: Path) -> None:
    own, live, dead = worker(3, 2, 7), worker(5, 4, 9), worker(11, 100, 12)
    publish(live.registry, tmp_path, 1)  # pid 1 is always alive (and never ours)
    publish(dead.registry, tmp_path, dead_pid())
    merged = values(merge(generate_latest(own.registry), tmp_path, pid=999_999))
    labels = (("code", "200"), ("model", "spam"), ("project", "mail"), ("version", "v1"))
    assert merged[("modelyard_gateway_requests_total", labels)] == 3 + 5 + 11  # the dead one's count stays
    assert merged[("modelyard_gateway_request_duration_seconds_count", labels[1:])] == 19
    assert merged[("modelyard_gateway_request_duration_seconds_sum", labels[1:])] == pytest.approx(19 * 0.002)
    assert merged[("modelyard_gateway_in_flight_requests", ())] == 2 + 4  # not the dead worker's 100
    assert merged[("modelyard_gateway_routing_revision", ())] == 9  # max over live workers
    assert not any(name.endswith("_created") for name, _ in merged)


def test_label_values_survive_the_round_trip(tmp_path: Path) -> None:
    tricky = 'a "quoted" \\ back\nline'
    publish(worker(1, 0, 1, label=tricky).registry, tmp_path, 1)
    merged = values(merge(generate_latest(CollectorRegistry()), tmp_path, pid=999_999))
    assert any(dict(labels).get("project") == tricky for _, labels in merged)


def test_a_single_worker_renders_its_own_registry(tmp_path: Path) -> None:
    metrics = worker(2, 1, 3)
    assert metrics.shared_dir is None
    assert values(metrics.render()) == values(generate_latest(metrics.registry))
    metrics.publish()  # no shared folder: nothing written anywhere
    shared = GatewayMetrics(shared_dir=tmp_path)
    shared.publish()
    assert [path.suffix for path in tmp_path.iterdir()] == [".prom"]


def test_answer_latency_buckets_are_cumulative_and_summed_over_status_codes() -> None:
    metrics = GatewayMetrics()
    for code, seconds in ((200, 0.0004), (200, 0.0005), (200, 0.003), (503, 100.0)):
        metrics.answered("mail", "spam", "v1", code, seconds)
    found = values(generate_latest(metrics.registry))
    version = (("model", "spam"), ("project", "mail"), ("version", "v1"))
    assert found[("modelyard_gateway_requests_total", (("code", "200"), *version))] == 3
    assert found[("modelyard_gateway_requests_total", (("code", "503"), *version))] == 1

    def bucket(le: str) -> float:
        return found[("modelyard_gateway_request_duration_seconds_bucket", (("le", le), *version))]

    assert bucket("0.0005") == 2  # an upper bound is inclusive, as in Prometheus
    assert bucket("0.001") == 2
    assert bucket("0.005") == 3
    assert bucket("30.0") == 3
    assert bucket("+Inf") == 4
    assert found[("modelyard_gateway_request_duration_seconds_count", version)] == 4
    assert found[("modelyard_gateway_request_duration_seconds_sum", version)] == pytest.approx(100.0039)
    assert metrics.requests.count(("mail", "spam", "v1", "200")) == 3
