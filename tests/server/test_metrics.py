"""The Prometheus ``/metrics`` endpoint: request counts, latency, batch sizes, queue depth, in-flight.

Every scrape is parsed with ``prometheus_client``'s own parser, never string-matched. Most tests
run in-process (Starlette TestClient, whose calls return once the app has finished, metrics
included); the in-flight / queue-depth test serves a real uvicorn and holds requests in a gated
model while it scrapes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

import modelyard
from modelyard import BatchSpec, TensorSpec
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import serve_in_thread

REQUESTS = "modelyard_requests_total"
LATENCY = "modelyard_request_duration_seconds"
BATCH_SIZE = "modelyard_batch_size"
BATCH_DURATION = "modelyard_batch_duration_seconds"
IN_FLIGHT = "modelyard_requests_in_flight"
QUEUE_DEPTH = "modelyard_queue_depth"
MODEL_IN_FLIGHT = "modelyard_model_requests_in_flight"
BUSY = "modelyard_model_busy_seconds_total"
INFERENCES = "modelyard_inference_count_total"
EXECUTIONS = "modelyard_inference_exec_count_total"

WAIT_S = 10.0  # the longest any step waits for the server; tests normally take milliseconds


# -- parsing -------------------------------------------------------------------------------------


class Scrape:
    """One parsed exposition: every sample, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name{labels}`` (exact label set), or None if absent."""
        found = [s.value for s in self.series(name) if s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None

    def request_counts(self) -> dict[tuple[str, str, str], float]:
        """``{(model, protocol, code): count}`` for every series of the request counter."""
        counts = {}
        for sample in self.series(REQUESTS):
            assert set(sample.labels) == {"model", "protocol", "code"}, sample
            counts[sample.labels["model"], sample.labels["protocol"], sample.labels["code"]] = sample.value
        return counts

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """``[(le, cumulative count)]`` of one histogram series, in the order of their bounds."""
        rows = []
        for sample in self.series(f"{name}_bucket"):
            other = {k: v for k, v in sample.labels.items() if k != "le"}
            if other == labels:
                rows.append((float(sample.labels["le"]), sample.value))
        return sorted(rows)


def scrape(get: Callable[[str], Any]) -> Scrape:
    """GET /metrics through ``get`` (a TestClient's or an httpx client's), checked and parsed."""
    response = get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def assert_histogram(page: Scrape, name: str, count: int, **labels: str) -> list[tuple[float, float]]:
    """Check one histogram series is well formed with ``count`` observations; return its buckets."""
    buckets = page.buckets(name, **labels)
    assert buckets, f"no {name} buckets for {labels}"
    bounds = [le for le, _ in buckets]
    cumulative = [value for _, value in buckets]
    assert len(set(bounds)) == len(bounds), bounds
    assert bounds[-1] == math.inf
    assert all(a <= b for a, b in itertools.pairwise(cumulative)), buckets
    assert cumulative[-1] == count
    assert page.value(f"{name}_count", **labels) == count
    return buckets


# -- requests ------------------------------------------------------------------------------------


def x_input(data: list[float], shape: list[int], name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": "FP32", "data": data}


def doubler_rows(rows: int, start: float = 0.0) -> dict[str, Any]:
    data = [start + i for i in range(rows * 3)]
    return {"inputs": [x_input(data, [rows, 3])]}


OK_V2 = 3  # successful OIP infers on doubler in the mixed traffic below


def send_mixed_traffic(client: TestClient) -> None:
    """Counted requests of every kind, plus GETs and probes that must not be counted."""
    for i in range(OK_V2):
        response = client.post("/v2/models/doubler/infer", json=doubler_rows(1, start=i))
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [2.0 * (i + k) for k in range(3)]
    bad_shape = {"inputs": [x_input([1.0, 2.0], [1, 2])]}  # doubler takes [-1, 3]
    assert client.post("/v2/models/doubler/infer", json=bad_shape).status_code == 400
    negative = {"inputs": [x_input([-1.0], [1, 1])]}
    assert client.post("/v2/models/picky/infer", json=negative).status_code == 500
    predict = client.post("/v1/models/doubler:predict", json={"instances": [[1.0, 2.0, 3.0]]})
    assert predict.status_code == 200, predict.text
    assert predict.json() == {"predictions": [[2.0, 4.0, 6.0]]}
    assert client.post("/v2/models/ghost/infer", json=doubler_rows(1)).status_code == 404
    # Status, metadata and probes are not requests to a model: none of these may be counted.
    assert client.get("/v2/models/doubler").status_code == 200
    assert client.get("/v1/models/doubler").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200


EXPECTED_COUNTS = {
    ("doubler", "v2", "200"): OK_V2,
    ("doubler", "v2", "400"): 1,
    ("picky", "v2", "500"): 1,
    ("doubler", "v1", "200"): 1,
    ("", "v2", "404"): 1,  # unknown models are labelled model=""
}


# -- request counter and latency histogram -------------------------------------------------------


def test_fresh_server_exports_gauges_at_zero_and_no_request_series(client: TestClient) -> None:
    page = scrape(client.get)
    assert page.request_counts() == {}
    assert page.series(f"{LATENCY}_count") == []
    for name in ("doubler", "picky", "lister", "slow", "async_echo"):
        assert page.value(QUEUE_DEPTH, model=name) == 0.0


def test_request_counter_is_exact_per_model_protocol_and_code(client: TestClient) -> None:
    send_mixed_traffic(client)
    page = scrape(client.get)
    assert page.request_counts() == EXPECTED_COUNTS
    # An unknown model's name never becomes a label value of any series.
    assert all("ghost" not in s.labels.values() for s in page.samples)


def test_counter_accumulates_across_scrapes(client: TestClient) -> None:
    send_mixed_traffic(client)
    first = scrape(client.get).request_counts()
    send_mixed_traffic(client)
    second = scrape(client.get).request_counts()
    assert first == EXPECTED_COUNTS
    assert second == {key: 2 * count for key, count in EXPECTED_COUNTS.items()}


def test_latency_histogram_counts_each_request_once_per_model_and_protocol(client: TestClient) -> None:
    send_mixed_traffic(client)
    page = scrape(client.get)
    per_series: dict[tuple[str, str], int] = {}
    for (model, protocol, _code), count in EXPECTED_COUNTS.items():
        per_series[model, protocol] = per_series.get((model, protocol), 0) + count
    assert per_series[("doubler", "v2")] == OK_V2 + 1
    seen = {(s.labels["model"], s.labels["protocol"]) for s in page.series(f"{LATENCY}_count")}
    assert seen == set(per_series)
    for (model, protocol), count in per_series.items():
        assert_histogram(page, LATENCY, count, model=model, protocol=protocol)
        total = page.value(f"{LATENCY}_sum", model=model, protocol=protocol)
        assert total is not None
        assert total > 0


def test_latency_histogram_measures_the_time_spent_in_the_model(client: TestClient) -> None:
    seconds = 0.3
    body = {"inputs": [x_input([seconds], [1], name="seconds")]}
    started = time.perf_counter()
    assert client.post("/v2/models/slow/infer", json=body).status_code == 200
    elapsed = time.perf_counter() - started
    page = scrape(client.get)
    buckets = dict(assert_histogram(page, LATENCY, 1, model="slow", protocol="v2"))
    observed = page.value(f"{LATENCY}_sum", model="slow", protocol="v2")
    assert observed is not None
    assert seconds <= observed <= elapsed
    assert buckets[0.25] == 0  # a request that slept 0.3 s is not in any bucket below it
    if elapsed <= 0.5:  # observed <= elapsed, so the 0.5 s bucket holds it
        assert buckets[0.5] == 1
    batch = page.value(f"{BATCH_DURATION}_sum", model="slow")
    assert batch is not None
    assert seconds <= batch <= observed
    assert page.value(BUSY, model="slow") == batch  # the model thread's busy time: its batches'
    assert page.value(BUSY, model="doubler") is None  # no batch ran: no series yet


def test_the_process_exports_what_a_profiler_reads(client: TestClient) -> None:
    page = scrape(client.get)
    cpu = page.value("process_cpu_seconds_total")
    rss = page.value("process_resident_memory_bytes")
    fds = page.value("process_open_fds")
    threads = page.value("modelyard_process_threads")
    assert cpu is not None
    assert cpu > 0
    assert rss is not None
    assert rss > 10 * 2**20  # numpy and the app alone take more than 10 MiB
    assert fds is not None
    assert fds >= 3
    assert threads is not None
    assert threads >= threading.active_count()  # the OS counts native threads too


# -- batch-size histogram ------------------------------------------------------------------------


def test_batch_size_histogram_counts_rows_of_coalesced_batches() -> None:
    row_counts = [1, 2, 3, 4, 5, 6]
    total = sum(row_counts)
    # Long window, and a batch limit that only all requests together fill: they coalesce.
    spec = models.Doubler.replace(batching=BatchSpec(max_batch_size=total, max_latency_ms=2000, stack=True))
    barrier = threading.Barrier(len(row_counts), timeout=WAIT_S)
    with TestClient(build_app(Settings(), [spec])) as client:

        def call(rows: int) -> Any:
            barrier.wait()
            return client.post("/v2/models/doubler/infer", json=doubler_rows(rows))

        with ThreadPoolExecutor(len(row_counts)) as pool:
            responses = list(pool.map(call, row_counts))
        for rows, response in zip(row_counts, responses, strict=True):
            assert response.status_code == 200, response.text
            output = response.json()["outputs"][0]
            assert output["shape"] == [rows, 3]
            assert output["data"] == [2.0 * i for i in range(rows * 3)]
        page = scrape(client.get)

    batches = page.value(f"{BATCH_SIZE}_count", model="doubler")
    assert batches is not None
    assert 1 <= batches < len(row_counts)  # requests really shared batches
    assert_histogram(page, BATCH_SIZE, int(batches), model="doubler")
    assert page.value(f"{BATCH_SIZE}_sum", model="doubler") == total
    assert page.value(INFERENCES, model="doubler", version="1") == total
    assert page.value(EXECUTIONS, model="doubler", version="1") == batches
    assert page.request_counts() == {("doubler", "v2", "200"): len(row_counts)}


def test_each_request_of_an_unbatched_model_is_a_batch_of_one(client: TestClient) -> None:
    body = {"inputs": [x_input([0.0], [1], name="seconds")]}
    for _ in range(3):
        assert client.post("/v2/models/slow/infer", json=body).status_code == 200
    page = scrape(client.get)
    buckets = dict(assert_histogram(page, BATCH_SIZE, 3, model="slow"))
    assert buckets[1.0] == 3
    assert page.value(f"{BATCH_SIZE}_sum", model="slow") == 3


# -- in-flight requests and queue depth, over real HTTP ------------------------------------------


@modelyard.model(
    name="gated",
    inputs=[TensorSpec("x", "FP32", [-1, 1])],
    outputs=[TensorSpec("y", "FP32", [-1, 1])],
)
class Gated:
    """Holds every predict call until ``gate`` opens; one row per batch, so later requests queue."""

    def __init__(self, gate: threading.Event, entered: threading.Event) -> None:
        self.gate = gate
        self.entered = entered

    @modelyard.batch(max_batch_size=1, max_latency_ms=0, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        if not self.gate.wait(WAIT_S):
            raise RuntimeError("the test never opened the gate")
        return {"y": inputs["x"] * 10}


def wait_for(check: Callable[[], Scrape], ready: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``ready`` holds (at most WAIT_S); return that scrape, or fail with the last one."""
    deadline = time.monotonic() + WAIT_S
    page = check()
    while not ready(page):
        if time.monotonic() > deadline:
            pytest.fail(f"metrics never reached the expected state; last scrape:\n{page.text}")
        time.sleep(0.02)
        page = check()
    return page


@pytest.mark.timeout(60)
def test_in_flight_and_queue_depth_while_requests_wait_for_the_model() -> None:
    gate, entered = threading.Event(), threading.Event()
    spec = Gated.replace(init_kwargs={"gate": gate, "entered": entered})
    app = build_app(Settings(), [spec, models.Doubler])
    v2, v1 = 3, 1  # requests held: one runs in the model, the others wait in its queue

    with serve_in_thread(app) as address, httpx.Client(base_url=f"http://{address}", timeout=WAIT_S) as http:

        def infer_v2(value: float) -> httpx.Response:
            return http.post("/v2/models/gated/infer", json={"inputs": [x_input([value], [1, 1])]})

        def predict_v1(value: float) -> httpx.Response:
            return http.post("/v1/models/gated:predict", json={"instances": [[value]]})

        def metrics() -> Scrape:
            return scrape(http.get)

        idle = metrics()
        assert idle.value(QUEUE_DEPTH, model="gated") == 0
        assert all(s.value == 0 for s in idle.series(IN_FLIGHT))

        with ThreadPoolExecutor(v2 + v1) as pool:
            try:
                futures = [pool.submit(infer_v2, float(i)) for i in range(v2)]
                futures.append(pool.submit(predict_v1, float(v2)))
                assert entered.wait(WAIT_S), "no request reached the model"
                page = wait_for(metrics, lambda p: p.value(QUEUE_DEPTH, model="gated") == v2 + v1 - 1)
                assert page.value(IN_FLIGHT, protocol="v2") == v2
                assert page.value(IN_FLIGHT, protocol="v1") == v1
                assert page.value(QUEUE_DEPTH, model="doubler") == 0  # queues are per model
                assert page.value(MODEL_IN_FLIGHT, model="gated") == v2 + v1  # one computing, the rest queued
                assert page.value(MODEL_IN_FLIGHT, model="doubler") == 0
                assert page.request_counts() == {}  # nothing has finished yet
                # An idle model answers while another is saturated, and is counted at once.
                assert http.post("/v2/models/doubler/infer", json=doubler_rows(1)).status_code == 200
                assert metrics().request_counts() == {("doubler", "v2", "200"): 1}
            finally:
                gate.set()
            responses = [future.result(timeout=WAIT_S) for future in futures]

        for i, response in enumerate(responses[:v2]):
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [10.0 * i]
        assert responses[v2].status_code == 200, responses[v2].text
        assert responses[v2].json() == {"predictions": [[10.0 * v2]]}

        done = metrics()
        assert done.value(QUEUE_DEPTH, model="gated") == 0
        assert done.value(MODEL_IN_FLIGHT, model="gated") == 0
        assert done.value(IN_FLIGHT, protocol="v2") == 0
        assert done.value(IN_FLIGHT, protocol="v1") == 0
        assert done.request_counts() == {
            ("gated", "v2", "200"): v2,
            ("gated", "v1", "200"): v1,
            ("doubler", "v2", "200"): 1,
        }
        buckets = dict(assert_histogram(done, BATCH_SIZE, v2 + v1, model="gated"))
        assert buckets[1.0] == v2 + v1  # max_batch_size=1: every batch held one row


@pytest.mark.timeout(60)
def test_queue_depth_counts_every_version_and_drops_expired_requests() -> None:
    gate, entered = threading.Event(), threading.Event()
    spec = Gated.replace(init_kwargs={"gate": gate, "entered": entered})
    # Version 2 is registered last: the depth of version 1 must still be exported.
    app = build_app(Settings(max_queue=2), [spec.replace(version="1"), spec.replace(version="2")])

    with serve_in_thread(app) as address, httpx.Client(base_url=f"http://{address}", timeout=WAIT_S) as http:

        def infer(timeout_us: int | None = None) -> httpx.Response:
            body: dict[str, Any] = {"inputs": [x_input([1.0], [1, 1])]}
            if timeout_us is not None:
                body["parameters"] = {"timeout": timeout_us}
            return http.post("/v2/models/gated/versions/1/infer", json=body)

        def depth_is(n: int) -> Callable[[Scrape], bool]:
            return lambda page: page.value(QUEUE_DEPTH, model="gated") == n

        with ThreadPoolExecutor(4) as pool:
            try:
                running = pool.submit(infer)
                assert entered.wait(WAIT_S), "no request reached the model"
                queued = [pool.submit(infer)]
                wait_for(lambda: scrape(http.get), depth_is(1))
                expired = infer(timeout_us=100_000)  # queues (depth 2), then times out
                assert expired.status_code == 504, expired.text
                wait_for(lambda: scrape(http.get), depth_is(1))
                # max_queue=2: the expired request's place is free again, so this one queues.
                queued.append(pool.submit(infer))
                wait_for(lambda: scrape(http.get), depth_is(2))
            finally:
                gate.set()
            answers = [f.result(timeout=WAIT_S) for f in (running, *queued)]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert scrape(http.get).value(QUEUE_DEPTH, model="gated") == 0


# -- one registry per app ------------------------------------------------------------------------


@pytest.fixture
def two_apps() -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(build_app(Settings(), [models.Doubler])) as a,
        TestClient(build_app(Settings(), [models.Doubler])) as b,
    ):
        yield a, b


def test_two_apps_in_one_process_keep_separate_registries(two_apps: tuple[TestClient, TestClient]) -> None:
    a, b = two_apps
    for _ in range(2):
        assert a.post("/v2/models/doubler/infer", json=doubler_rows(2)).status_code == 200
    assert b.post("/v1/models/doubler:predict", json={"instances": [[1.0, 2.0, 3.0]]}).status_code == 200

    page_a, page_b = scrape(a.get), scrape(b.get)
    assert page_a.request_counts() == {("doubler", "v2", "200"): 2}
    assert page_b.request_counts() == {("doubler", "v1", "200"): 1}
    assert page_a.value(INFERENCES, model="doubler", version="1") == 4
    assert page_b.value(INFERENCES, model="doubler", version="1") == 1
    assert page_a.value(f"{LATENCY}_count", model="doubler", protocol="v1") is None
    assert page_b.value(f"{LATENCY}_count", model="doubler", protocol="v2") is None
    # Nor does either app write to prometheus_client's process-wide default registry.
    for labels in (
        {"model": "doubler", "protocol": "v2", "code": "200"},
        {"model": "doubler", "protocol": "v1", "code": "200"},
    ):
        assert prometheus_client.REGISTRY.get_sample_value(REQUESTS, labels) is None
