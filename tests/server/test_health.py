"""Readiness from the models' ``health()`` hooks: polled in the background, read by the probes.

Every test runs the real app (lifespan included) through Starlette's TestClient with a short poll
interval, and flips what a model's hook answers through a shared :class:`Switch`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard.sdk import ModelSpec
from modelyard.server import Settings
from modelyard.server.app import build_app, build_dataplane
from tests import models

INTERVAL_S = 0.05
DOUBLE = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
READY_PATHS = ("/v2/models/patient/ready", "/v2/health/ready", "/health/ready")


@dataclass
class Switch:
    """What the hook answers next: ``verdict``, or an exception (``raise``), or nothing (``hang``)."""

    verdict: bool = True
    mode: str = "return"
    calls: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self) -> bool:
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("gpu lost")
        if self.mode == "hang":
            self.release.wait(30)
        return self.verdict


@modelyard.model(name="patient")
class SyncPatient:
    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    def health(self) -> bool:
        return self.switch.answer()

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return inputs["x"] * 2


@modelyard.model(name="patient")
class AsyncPatient:
    def __init__(self, switch: Switch) -> None:
        self.switch = switch

    async def health(self) -> bool:
        if self.switch.mode == "hang":
            self.switch.calls += 1
            await asyncio.sleep(30)  # cancelled when the poll gives up on it
        return self.switch.answer()

    async def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return inputs["x"] * 2


KINDS = {"sync": SyncPatient, "async": AsyncPatient}


def serve(spec: ModelSpec, switch: Switch, **settings: float) -> TestClient:
    options = {"health_interval_s": INTERVAL_S, "health_timeout_s": 1.0, **settings}
    return TestClient(build_app(Settings(**options), [spec.replace(init_kwargs={"switch": switch})]))


def eventually(check: Callable[[], bool], within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def statuses(client: TestClient) -> list[int]:
    return [client.get(path).status_code for path in READY_PATHS]


@pytest.fixture
def switch() -> Iterator[Switch]:
    switch = Switch()
    yield switch
    switch.release.set()  # a hung sync hook's thread finishes


@pytest.mark.parametrize("kind", KINDS)
def test_false_turns_readiness_503_after_a_poll_and_true_turns_it_back(kind: str, switch: Switch) -> None:
    with serve(KINDS[kind], switch) as client:
        assert statuses(client) == [200, 200, 200]
        switch.verdict = False
        assert eventually(lambda: statuses(client) == [503, 503, 503]), statuses(client)
        assert client.get("/v2/models/patient/ready").json() == {"name": "patient", "ready": False}
        assert client.get("/v2/health/ready").json() == {"ready": False}
        ready = client.get("/health/ready").json()
        assert ready == {"ready": False, "draining": False, "models": {"patient/1": "UNHEALTHY"}}
        index = client.post("/v2/repository/index").json()
        assert index == [
            {"name": "patient", "version": "1", "state": "READY", "reason": "health() returned False"}
        ]
        # Readiness routes traffic away; a request that still arrives is served.
        assert client.post("/v2/models/patient/infer", json=DOUBLE).status_code == 200
        assert client.get("/health/live").status_code == 200

        switch.verdict = True
        assert eventually(lambda: statuses(client) == [200, 200, 200]), statuses(client)
        assert client.get("/health/ready").json()["models"] == {"patient/1": "READY"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_hook_that_raises_is_unhealthy(kind: str, switch: Switch) -> None:
    with serve(KINDS[kind], switch) as client:
        assert statuses(client) == [200, 200, 200]
        switch.mode = "raise"
        assert eventually(lambda: statuses(client) == [503, 503, 503]), statuses(client)
        [row] = client.post("/v2/repository/index").json()
        assert row["reason"] == "health() raised RuntimeError: gpu lost"
        switch.mode = "return"
        assert eventually(lambda: statuses(client) == [200, 200, 200]), statuses(client)


@pytest.mark.parametrize("kind", KINDS)
def test_a_hook_that_hangs_past_the_timeout_is_unhealthy(kind: str, switch: Switch) -> None:
    # One worker: a hung sync hook would starve predict if it ran in the model's pool.
    hang = {"health_timeout_s": 0.1, "workers_per_model": 1, "request_timeout_s": 2.0}
    with serve(KINDS[kind], switch, **hang) as client:
        assert statuses(client) == [200, 200, 200]
        switch.mode = "hang"
        assert eventually(lambda: statuses(client) == [503, 503, 503]), statuses(client)
        [row] = client.post("/v2/repository/index").json()
        assert row["reason"] == "health() did not answer within 0.1 s"
        assert client.post("/v2/models/patient/infer", json=DOUBLE).status_code == 200
        calls = switch.calls
        if kind == "sync":  # the hung call is waited on again, never started twice
            time.sleep(INTERVAL_S * 6)
            assert switch.calls == calls
        else:  # a coroutine is cancelled at the timeout, so each poll calls afresh
            assert eventually(lambda: switch.calls > calls)
        assert statuses(client) == [503, 503, 503]

        switch.mode = "return"
        switch.release.set()
        assert eventually(lambda: statuses(client) == [200, 200, 200]), statuses(client)


def test_sync_hooks_run_off_the_event_loop_and_async_hooks_on_it() -> None:
    threads: dict[str, str] = {}

    @modelyard.model(name="where")
    class Where:
        def health(self) -> bool:
            threads["sync"] = threading.current_thread().name
            return True

        def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
            return inputs["x"]

    @modelyard.model(name="where_async")
    class WhereAsync:
        async def health(self) -> bool:
            threads["async"] = threading.current_thread().name
            return True

        def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
            return inputs["x"]

    with TestClient(build_app(Settings(), [Where, WhereAsync])) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
    assert threads["sync"] == "model where version 1 health"
    assert threads["async"] == loop_thread


def test_probes_read_the_last_verdict_and_never_call_the_hook(switch: Switch) -> None:
    with serve(SyncPatient, switch, health_interval_s=60) as client:
        assert switch.calls == 1  # the check at start-up, before readiness could turn true
        for _ in range(10):
            assert statuses(client) == [200, 200, 200]
            assert client.get("/v2/models/patient/versions/1/ready").status_code == 200
        assert switch.calls == 1


def test_an_unhealthy_model_is_not_ready_from_the_start(switch: Switch) -> None:
    switch.verdict = False
    with serve(SyncPatient, switch, health_interval_s=60) as client:
        assert statuses(client) == [503, 503, 503]
        assert client.get("/health/startup").status_code == 200  # it did start


def test_a_model_without_a_health_hook_stays_ready() -> None:
    app = build_app(Settings(health_interval_s=INTERVAL_S), [models.Doubler])
    with TestClient(app) as client:
        time.sleep(INTERVAL_S * 5)  # several polls
        assert client.get("/v2/models/doubler/ready").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/health/ready").json()["models"] == {"doubler/1": "READY"}
        assert 'modelyard_model_healthy{model="doubler",version="1"} 1.0' in client.get("/metrics").text


def test_the_gauge_follows_the_verdict(switch: Switch) -> None:
    gauge = 'modelyard_model_healthy{model="patient",version="1"}'
    with serve(SyncPatient, switch) as client:
        assert f"{gauge} 1.0" in client.get("/metrics").text
        switch.verdict = False
        assert eventually(lambda: f"{gauge} 0.0" in client.get("/metrics").text)


def test_each_transition_is_logged_once(switch: Switch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelyard.server")
    with serve(SyncPatient, switch) as client:
        switch.verdict = False
        assert eventually(lambda: statuses(client) == [503, 503, 503])
        calls = switch.calls
        assert eventually(lambda: switch.calls >= calls + 5)  # still polled, still unhealthy
        switch.verdict = True
        assert eventually(lambda: statuses(client) == [200, 200, 200])
    messages = [r.getMessage() for r in caplog.records if "health" in r.getMessage()]
    assert messages == [
        "model patient version 1 is unhealthy, readiness reports 503: health() returned False",
        "model patient version 1 is healthy again",
    ]


def pollers() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "modelyard-health-poller"]


@pytest.mark.anyio
async def test_the_poller_is_a_task_that_starts_after_warm_up_and_stops_on_shutdown(switch: Switch) -> None:
    spec = SyncPatient.replace(init_kwargs={"switch": switch})
    plane = build_dataplane(Settings(health_interval_s=INTERVAL_S), [spec])
    assert pollers() == []
    await plane.start()
    [poller] = pollers()
    assert switch.calls == 1  # the check at start-up
    await asyncio.sleep(INTERVAL_S * 4)
    assert switch.calls > 1
    await plane.stop()
    assert poller.done()
    assert pollers() == []
