"""The local deploy target end to end: real ``modelyard serve`` replicas behind a real gateway.

Each test has a SQLite control plane under tmp_path with the route ``mail/spam`` (v1 weight 1), an
in-process gateway polling it every 0.1 s with retries off (so a request sent to a replica that
stopped accepting fails instead of being quietly retried elsewhere), and a ``LocalTarget`` whose
replicas announce into the same database. The target is closed in a ``finally``: no process
outlives a test, whether it passes or fails.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.deploy.backend import ReplicaStatus
from modelyard.deploy.spec import VersionSpec
from modelyard.deploy.targets.local import LocalTarget
from modelyard.errors import ModelNotReady
from tests.gateway.support import GatewayThread, GatewayWorld, wait_for
from tests.support import linear_onnx

pytestmark = pytest.mark.slow

KEY = ("mail", "spam", "v1")
PREDICT = "/projects/mail/models/spam:predict"
BODY = {"instances": [[1.0, 2.0, 3.0]]}


class Setup:
    """The world of one test: control plane, gateway, model file and target."""

    def __init__(self, world: GatewayWorld, target: LocalTarget, model: Path) -> None:
        self.world = world
        self.target = target
        self.model = model
        self.gateway: GatewayThread = world.gateway(refresh_interval_s=0.1, retries=0)
        self.http = httpx.Client(base_url=self.gateway.url, timeout=10, trust_env=False)

    def spec(self, replicas: int = 1, **fields: object) -> VersionSpec:
        return VersionSpec.model_validate(
            {"uri": str(self.model), "replicas": replicas, "weight": 1, **fields}
        )

    def predict(self) -> int:
        return self.http.post(PREDICT, json=BODY).status_code

    def routed(self) -> set[str]:
        """The replicas of v1 the routing table gives the gateways: the ready announced ones."""
        version = self.world.store.load().routes[("mail", "spam")].version("v1")
        return set(version.replicas) if version is not None else set()

    def replicas(self) -> list[ReplicaStatus]:
        return [r for r in self.target.status() if (r.project, r.model, r.version) == KEY]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with GatewayWorld.context(tmp_path) as world:
        world.store.set_weights("mail", "spam", {"v1": 1})
        target = LocalTarget(world.control)
        try:
            created = Setup(world, target, linear_onnx(tmp_path / "spam.onnx"))
            with created.http:
                yield created
        finally:
            target.close()  # drains, then kills whatever is left: never an orphan
    assert target.status() == []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ensure_runs_ready_replicas_restarts_the_dead_scales_and_removes(setup: Setup) -> None:
    setup.target.ensure(KEY, setup.spec(replicas=2), timeout_s=60)
    replicas = setup.replicas()
    assert [(r.replica, r.state) for r in replicas] == [("0", "ready"), ("1", "ready")]
    urls = {r.url for r in replicas}
    assert setup.routed() == urls  # ready means routable: announced and ready in the table
    assert wait_for(lambda: setup.predict() == 200, timeout=2)
    assert [setup.predict() for _ in range(10)] == [200] * 10

    started = time.monotonic()
    setup.target.ensure(KEY, setup.spec(replicas=2), timeout_s=60)  # unchanged: nothing to do
    assert time.monotonic() - started < 0.5
    assert {r.url for r in setup.replicas()} == urls

    pid = setup.target.pid(KEY, "0")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: setup.replicas()[0].restarts == 1, timeout=5)
    assert wait_for(lambda: setup.replicas()[0].state == "ready", timeout=30), setup.replicas()
    restarted = setup.replicas()[0].url
    assert restarted not in urls
    assert setup.target.pid(KEY, "0") != pid
    assert setup.routed() == {restarted, setup.replicas()[1].url}  # the dead URL was deregistered
    assert wait_for(lambda: [setup.predict() for _ in range(10)] == [200] * 10, timeout=5)

    kept = setup.replicas()[0].url
    setup.target.ensure(KEY, setup.spec(replicas=1), timeout_s=60)  # scale down drains replica 1
    assert [(r.replica, r.url, r.state) for r in setup.replicas()] == [("0", kept, "ready")]
    assert setup.routed() == {kept}
    assert setup.predict() == 200

    setup.target.remove(KEY)
    assert setup.replicas() == []
    assert setup.routed() == set()  # each replica deregistered on its way out
    assert wait_for(lambda: setup.predict() == 502, timeout=3)  # no replica left to route to


def test_a_replica_does_not_inherit_the_operators_credentials(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Model code reads its environment: the control-plane token and gateway key of whoever runs the
    # target must not be in it (replicas announce into the database here and need neither).
    monkeypatch.setenv("MODELYARD_TOKEN", "mdy_operator_secret")
    monkeypatch.setenv("MODELYARD_API_KEY", "mdk_operator_key")
    monkeypatch.setenv("MODELYARD_TEST_INHERITED", "yes")
    setup.target.ensure(KEY, setup.spec(), timeout_s=60)
    pid = setup.target.pid(KEY, "0")
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"MODELYARD_TEST_INHERITED=yes" in environ  # the rest of the environment is passed on
    assert [v for v in environ if v.startswith((b"MODELYARD_TOKEN=", b"MODELYARD_API_KEY="))] == []


def test_a_failing_spec_raises_in_time_and_leaves_the_old_replicas_serving(
    setup: Setup, tmp_path: Path
) -> None:
    # The control plane's variables win over the spec's: the replica still announces where we look.
    elsewhere = {"env": {"MODELYARD_HOME": str(tmp_path / "elsewhere")}}
    setup.target.ensure(KEY, setup.spec(server=elsewhere), timeout_s=60)
    (old,) = setup.replicas()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    cases = [
        (tmp_path / "missing.onnx", "exited with code 2 before it was ready", "missing.onnx"),
        (broken, "model spam/1 failed to load", "INVALID_PROTOBUF"),  # it lives on, never ready
    ]
    for uri, why, says in cases:
        started = time.monotonic()
        with pytest.raises(ModelNotReady) as caught:
            setup.target.ensure(KEY, setup.spec(uri=str(uri)), timeout_s=120)
        assert time.monotonic() - started < 20  # a replica that can never be ready fails at once
        message = str(caught.value)
        assert "mail/spam/v1" in message, message
        assert why in message, message
        assert says in message, message  # the last lines of the replica's stderr
        assert setup.replicas() == [old]  # the new replica is gone, the old one untouched
        assert setup.routed() == {old.url}
        assert setup.predict() == 200

    with pytest.raises(ModelNotReady, match=r"not ready within 0\.05 s"):  # a start that takes too long
        setup.target.ensure(KEY, setup.spec(batching={"max_batch_size": 4}), timeout_s=0.05)
    assert setup.replicas() == [old]


class Traffic:
    """Threads posting predictions through the gateway until the block ends; every outcome kept
    (the status code, or the name of the transport error)."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.records: list[list[str]] = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._drive, args=(r,)) for r in self.records]

    def _drive(self, record: list[str]) -> None:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as http:
            while not self.stop.is_set():
                try:
                    record.append(str(http.post(PREDICT, json=BODY).status_code))
                except httpx.HTTPError as exc:
                    record.append(type(exc).__name__)
                self.stop.wait(0.005)  # steady traffic that leaves the replicas' start-up some CPU

    def sent(self) -> int:
        return sum(map(len, self.records))

    def outcomes(self) -> list[str]:
        return [outcome for record in self.records for outcome in record]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def test_a_rolling_update_under_traffic_loses_no_request(setup: Setup) -> None:
    setup.target.ensure(KEY, setup.spec(replicas=2, batching={"max_batch_size": 8}), timeout_s=60)
    old = {r.url: setup.target.pid(KEY, r.replica) for r in setup.replicas()}
    assert wait_for(lambda: setup.predict() == 200, timeout=2)

    with Traffic(setup.gateway.url) as traffic:
        time.sleep(0.3)
        started = time.monotonic()
        setup.target.ensure(KEY, setup.spec(replicas=2, batching={"max_batch_size": 16}), timeout_s=60)
        rolled_in = time.monotonic() - started
        sent_before = traffic.sent()
        time.sleep(0.5)  # and traffic goes on, to the new replicas only
    answers = traffic.outcomes()
    failures = [outcome for outcome in answers if outcome != "200"]
    assert failures == [], f"{len(failures)} of {len(answers)} failed: {sorted(set(failures))}"
    print(f"rolling update: {rolled_in:.1f} s, {len(answers)} requests, none failed")
    assert sent_before > 50
    assert len(answers) > sent_before
    new = setup.replicas()
    assert [(r.replica, r.state) for r in new] == [("2", "ready"), ("3", "ready")]
    assert setup.routed() == {r.url for r in new}
    assert not setup.routed() & set(old)
    assert not any(alive(pid) for pid in old.values() if pid is not None)
