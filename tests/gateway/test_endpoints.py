"""Announcement discovery: replicas announce themselves with heartbeats; gateways find and drop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard._process import announced_url
from modelyard.control.app import build_control_app
from modelyard.errors import InvalidInput
from modelyard.registry import ControlSettings, Registry
from modelyard.routing.announcer import Announcer, parse_target
from modelyard.routing.client import RouteClient
from modelyard.routing.store import RouteStore
from tests.gateway.support import GatewayWorld, predict, wait_for
from tests.support import linear_onnx, serve_in_thread

PREDICT = "/projects/mail/models/spam:predict"
URL = "http://127.0.0.1:9001"


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[RouteStore]:
    with RouteStore.open(database_settings) as opened:
        opened.set_weights("mail", "spam", {"v1": 1})
        yield opened


def replicas(store: RouteStore) -> tuple[str, ...]:
    return store.load().routes[("mail", "spam")].version("v1").replicas  # type: ignore[union-attr]


def test_a_heartbeat_adds_a_replica_and_only_changes_bump_the_revision(store: RouteStore) -> None:
    before = store.revision()
    assert store.heartbeat("mail", "spam", "v1", URL, ttl_s=30) is True
    assert store.revision() == before + 1
    assert replicas(store) == (URL,)
    assert store.heartbeat("mail", "spam", "v1", URL, ttl_s=30) is False  # a plain heartbeat
    assert store.revision() == before + 1
    assert store.heartbeat("mail", "spam", "v1", URL, ready=False, ttl_s=30) is True  # draining
    assert replicas(store) == ()
    assert store.revision() == before + 2
    [endpoint] = store.endpoints()
    assert (endpoint.url, endpoint.ready) == (URL, False)
    assert endpoint.expires_at > endpoint.heartbeat_at


def test_static_and_announced_replicas_are_merged(store: RouteStore) -> None:
    store.set_replicas("mail", "spam", "v1", ["http://127.0.0.1:9000", URL])
    store.heartbeat("mail", "spam", "v1", URL)
    store.heartbeat("mail", "spam", "v1", "http://127.0.0.1:9002")
    assert replicas(store) == ("http://127.0.0.1:9000", URL, "http://127.0.0.1:9002")


def test_an_endpoint_of_an_unrouted_version_is_listed_but_not_routed(store: RouteStore) -> None:
    store.heartbeat("mail", "spam", "v9", URL)
    assert [v.version for v in store.load().routes[("mail", "spam")].versions] == ["v1"]
    assert [e.version for e in store.endpoints()] == ["v9"]


def test_stopped_heartbeats_expire_and_deregister_is_immediate(store: RouteStore) -> None:
    store.heartbeat("mail", "spam", "v1", URL, ttl_s=0.3)
    store.heartbeat("mail", "spam", "v1", "http://127.0.0.1:9002", ttl_s=30)
    assert store.expire() == 0
    time.sleep(0.4)
    assert replicas(store) == ("http://127.0.0.1:9002",)  # an expired row no longer routes...
    revision = store.revision()
    assert store.expire() == 1  # ...and the sweep removes it, moving the revision for the gateways
    assert store.revision() == revision + 1
    store.deregister("mail", "spam", "v1", "http://127.0.0.1:9002")
    assert replicas(store) == ()
    assert store.endpoints() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"version": "v 1"}, "version"),
    ],
)
def test_bad_heartbeats_name_the_field(store: RouteStore, kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"project": "mail", "model": "spam", "version": "v1", "url": URL, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        store.heartbeat(**args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_rest_api_and_its_client_announce_too(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    control = build_control_app(settings, registry := Registry(settings))
    with registry, serve_in_thread(control) as address, RouteClient(f"http://{address}") as client:
        client.set_weights("mail", "spam", {"v1": 1})
        assert client.heartbeat("mail", "spam", "v1", URL, ttl_s=20) is True
        assert client.get("mail", "spam").version("v1").replicas == (URL,)  # type: ignore[union-attr]
        [endpoint] = client.endpoints()
        assert (endpoint.project, endpoint.version, endpoint.ready) == ("mail", "v1", True)
        client.deregister("mail", "spam", "v1", URL)
        assert client.endpoints() == []
        with pytest.raises(InvalidInput) as caught:
            client.heartbeat("mail", "spam", "v1", "not a url")
        assert caught.value.field == "url"


def test_the_gateway_routes_to_announced_replicas_and_drops_silent_ones(tmp_path: Path) -> None:
    with GatewayWorld.context(tmp_path) as env, httpx.Client(timeout=10) as client:
        replica = env.replica("announced")
        env.store.set_weights("mail", "spam", {"v1": 1})
        gateway = env.gateway(refresh_interval_s=0.05)
        assert predict(client, gateway.url + PREDICT).status_code == 502  # no replica yet
        announcer = Announcer(
            env.store, ("mail", "spam", "v1"), replica.url, lambda: True, interval_s=0.1, ttl_s=0.5
        )
        announcer.start()
        assert wait_for(lambda: predict(client, gateway.url + PREDICT).status_code == 200, timeout=3)
        assert predict(client, gateway.url + PREDICT).json()["replica"] == "announced"
        announcer._stop.set()  # it dies without deregistering: only the expiry can remove it
        announcer._thread.join(2)
        silent_at = time.monotonic()
        assert wait_for(lambda: predict(client, gateway.url + PREDICT).status_code == 502, timeout=5)
        assert time.monotonic() - silent_at < 2.0  # ttl 0.5 s + a poll, not minutes


def test_parse_target_names_the_option() -> None:
    assert parse_target("mail/spam/v1") == ("mail", "spam", "v1")
    with pytest.raises(InvalidInput) as caught:
        parse_target("mail/spam")
    assert caught.value.field == "announce"


@pytest.mark.slow
def test_modelyard_serve_announce_registers_then_deregisters_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    for name in ("MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_DB", "MODELYARD_REGISTRY_URL"):
        env.pop(name, None)
    settings = ControlSettings(home=tmp_path / "home")
    model = linear_onnx(tmp_path / "spam.onnx")
    cli = str(Path(sys.executable).with_name("modelyard"))
    with RouteStore.open(settings) as store:
        store.set_weights("mail", "spam", {"v1": 1})
        proc = subprocess.Popen(
            [cli, "serve", str(model), "--port", "0", "--log-level", "warning", "--announce", "mail/spam/v1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            url = announced_url(proc.stdout.readline())
            assert url, proc.stderr.read() if proc.stderr else ""
            assert wait_for(lambda: [e.url for e in store.endpoints()] == [url], timeout=10)
            assert store.endpoints()[0].ready
            assert replicas(store) == (url,)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert store.endpoints() == []  # deregistered on the way out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
