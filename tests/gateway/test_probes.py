"""The gateway's liveness and readiness probes, before and after its routing table loads, through
both front ends (the raw HTTP/1.1 server and the ASGI app) and through ``modelyard.Client``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard.gateway.app import build_gateway_app
from modelyard.gateway.settings import GatewaySettings
from modelyard.routing.table import RoutingTable
from tests.gateway.support import GatewayWorld, wait_for

LIVE = ["/health/live", "/v2/health/live"]
READY = ["/health/ready", "/v2/health/ready"]
DOWN = "the database is not up yet"


class Gate:
    """A table source that cannot be read until opened, like a database that is still starting."""

    def __init__(self) -> None:
        self.open = False

    def revision(self) -> int:
        if not self.open:
            raise ConnectionError(DOWN)
        return 7

    def load(self) -> RoutingTable:
        return RoutingTable(revision=7)


def assert_not_ready(answer: httpx.Response, *, admin: bool = False) -> None:
    """503 not ready; why (which may name a database host or a file) only on the admin side."""
    why = DOWN if admin else "see the admin port or the gateway's log for why"
    assert answer.status_code == 503
    assert answer.json() == {
        "ready": False,
        "error": f"the routing table has not been loaded yet: {why}",
        "kind": "not_ready",
    }


@pytest.mark.parametrize("path", READY)
def test_http1_probes_before_and_after_the_table_loads(
    env: GatewayWorld, client: httpx.Client, path: str
) -> None:
    gate = Gate()
    gateway = env.gateway(source=gate)  # its first read fails: it serves anyway, not ready
    for live in LIVE:
        answer = client.get(gateway.url + live)
        assert (answer.status_code, answer.json()) == (200, {"live": True})
    assert_not_ready(client.get(gateway.url + path))
    assert_not_ready(client.get(gateway.admin_url + path), admin=True)
    assert client.head(gateway.url + path).status_code == 503
    gate.open = True
    assert wait_for(lambda: client.get(gateway.url + path).status_code == 200)
    answer = client.get(gateway.url + path)
    assert answer.json() == {"ready": True}
    gate.open = False  # a source failing later keeps the table it gave: still ready
    assert wait_for(lambda: "error" in client.get(gateway.admin_url + "/-/routing").json())
    assert client.get(gateway.url + path).status_code == 200


@pytest.mark.parametrize("path", READY)
def test_asgi_probes_before_and_after_the_table_loads(tmp_path: Path, path: str) -> None:
    gate = Gate()
    settings = GatewaySettings(refresh_interval_s=0.05, log_sink="none", control={"home": tmp_path})
    app = build_gateway_app(settings, gate)
    with TestClient(app) as client, TestClient(app.admin_app()) as admin:  # lifespan: start() runs
        for live in LIVE:
            answer = client.get(live)
            assert (answer.status_code, answer.json()) == (200, {"live": True})
        assert_not_ready(client.get(path))
        assert_not_ready(admin.get(path), admin=True)
        refused = client.post(path)
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
        gate.open = True
        assert wait_for(lambda: client.get(path).status_code == 200)
        assert client.get(path).json() == {"ready": True}


def test_the_client_asks_a_running_gateway_whether_it_is_ready(env: GatewayWorld) -> None:
    gate = Gate()
    gateway = env.gateway(source=gate)
    with modelyard.Client(gateway.url) as client:
        assert client.ready() is False  # 503: not ready, not an error
        gate.open = True
        assert wait_for(client.ready)
    with modelyard.Client(env.gateway().url) as client:  # a gateway on the routing database
        assert client.ready() is True


def test_a_failed_read_is_shown_counted_and_cleared(env: GatewayWorld, client: httpx.Client) -> None:
    gate = Gate()
    gateway = env.gateway(source=gate)
    routing = client.get(gateway.admin_url + "/-/routing").json()
    assert routing == {"revision": 0, "routes": [], "error": DOWN}

    def errors() -> float:
        for line in client.get(gateway.admin_url + "/metrics").text.splitlines():
            if line.startswith("modelyard_gateway_routing_errors_total "):
                return float(line.split()[1])
        raise AssertionError("no modelyard_gateway_routing_errors_total")

    assert errors() >= 1
    gate.open = True
    assert wait_for(lambda: "error" not in client.get(gateway.admin_url + "/-/routing").json())
    assert client.get(gateway.admin_url + "/-/routing").json() == {"revision": 7, "routes": []}
    counted = errors()
    time.sleep(0.2)  # a few polls, every one of them reading the table
    assert errors() == counted
