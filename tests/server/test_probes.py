"""Kubernetes probes (/health/live, /health/startup, /health/ready) and /metrics, in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models

DOUBLE = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


@pytest.fixture
def healthy() -> Iterator[TestClient]:
    with TestClient(build_app(Settings(), [models.Doubler, models.Lister])) as client:
        yield client


@pytest.fixture
def failing() -> Iterator[TestClient]:
    """Doubler loads; Unwell's warm-up fails."""
    with TestClient(build_app(Settings(), [models.Doubler, models.Unwell])) as client:
        yield client


def test_live_is_200(healthy: TestClient) -> None:
    response = healthy.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_startup_and_ready_are_200_when_every_model_loaded(healthy: TestClient) -> None:
    startup = healthy.get("/health/startup")
    assert startup.status_code == 200
    assert startup.json() == {"started": True}
    ready = healthy.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "draining": False,
        "models": {"doubler/1": "READY", "lister/1": "READY"},
    }
    assert healthy.get("/v2/health/ready").status_code == 200


def test_a_model_that_fails_to_load_fails_startup_and_readiness_not_liveness(failing: TestClient) -> None:
    startup = failing.get("/health/startup")
    assert startup.status_code == 503
    body = startup.json()
    assert body["started"] is False
    assert "weights are corrupt" in body["error"]
    assert "unwell" in body["error"]

    ready = failing.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["models"] == {"doubler/1": "READY", "unwell/1": "FAILED"}
    assert failing.get("/v2/health/ready").status_code == 503

    assert failing.get("/health/live").status_code == 200
    assert failing.get("/v2/health/live").status_code == 200
    # The model that did load still answers; the failed one says why it cannot.
    assert failing.post("/v2/models/doubler/infer", json=DOUBLE).status_code == 200
    assert failing.get("/v2/models/unwell/ready").status_code == 503
    index = failing.post("/v2/repository/index", json={}).json()
    unwell = next(row for row in index if row["name"] == "unwell")
    assert unwell["state"] == "FAILED"
    assert "weights are corrupt" in unwell["reason"]


def test_before_startup_nothing_is_ready_but_the_process_is_live() -> None:
    client = TestClient(build_app(Settings(), [models.Doubler]))  # no `with`: the lifespan never ran
    assert client.get("/health/live").status_code == 200
    startup = client.get("/health/startup")
    assert startup.status_code == 503
    assert startup.json() == {"started": False}
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["models"] == {"doubler/1": "LOADING"}


def test_draining_turns_readiness_off_but_keeps_liveness_and_serving() -> None:
    app = build_app(Settings(), [models.Doubler])
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        app.state.dataplane.lifecycle.draining = True
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["draining"] is True
        assert ready.json()["models"] == {"doubler/1": "READY"}  # the models are fine
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/doubler/ready").status_code == 503
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/startup").status_code == 200  # start-up did succeed
        # Draining stops new traffic via readiness; requests that still arrive are served.
        assert client.post("/v2/models/doubler/infer", json=DOUBLE).status_code == 200


def test_after_shutdown_models_are_unloaded_and_not_ready() -> None:
    app = build_app(Settings(), [models.Doubler])
    with TestClient(app):
        pass
    plane = app.state.dataplane
    assert plane.lifecycle.draining is True
    assert [status.state for status in plane.index()] == ["UNLOADED"]
    assert plane.ready() is False


def test_metrics_exposes_prometheus_text(healthy: TestClient) -> None:
    assert healthy.post("/v2/models/doubler/infer", json=DOUBLE).status_code == 200
    response = healthy.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'modelyard_queue_depth{model="doubler"} 0.0' in text
    assert 'modelyard_inference_count_total{model="doubler",version="1"} 1.0' in text
    assert 'modelyard_inference_exec_count_total{model="doubler",version="1"} 1.0' in text


@pytest.mark.parametrize("path", ["/health/live", "/health/startup", "/health/ready", "/metrics"])
def test_probes_are_get_only(healthy: TestClient, path: str) -> None:
    assert healthy.post(path).status_code == 405
