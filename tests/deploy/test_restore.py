"""``DeployService.restore``: a restarted ``modelyard up`` starts the last applied file's replicas
again (the local backend's stopped with the last one). The end-to-end test of it, a rollout that
goes on after its control plane was killed, is in tests/e2e/test_rollout.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.deploy.policy import DeployPolicy
from modelyard.deploy.service import DeployService
from modelyard.deploy.state import DeployStore
from modelyard.routing.store import RouteStore
from tests.deploy.support import RecordingTarget

FILE = """deployments:
- project: mail
  model: spam
  versions:
  - version: canary
    spec: {uri: spam/7, weight: 20}
  - version: stable
    spec: {uri: spam@production, replicas: 2, weight: 80}
"""
SPAM = ("mail", "spam")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[DeployStore, RouteStore]]:
    settings = ControlSettings(home=tmp_path / "home")
    with DeployStore.open(settings) as deploys:
        routes = RouteStore.open(settings)
        try:
            yield deploys, routes
        finally:
            routes.close()


def restarted(
    stores: tuple[DeployStore, RouteStore], policy: DeployPolicy | None = None
) -> tuple[DeployService, RecordingTarget, list[str]]:
    """A service on the same database with a new, empty target: what a restarted `up` has."""
    target, lines = RecordingTarget(), []
    return DeployService(*stores, target, policy=policy), target, lines


def test_nothing_applied_nothing_to_restore(stores: tuple[DeployStore, RouteStore]) -> None:
    service, target, lines = restarted(stores)
    assert service.restore(lines.append)
    assert (target.calls, lines) == ([], [])


def test_the_last_applied_file_comes_back_as_it_was_without_a_new_apply(
    stores: tuple[DeployStore, RouteStore],
) -> None:
    service, _, _ = restarted(stores)
    assert service.apply(FILE, user="alice", source="deploy.yaml").result.ok
    revision = stores[1].revision()

    service, target, lines = restarted(stores)
    assert service.restore(lines.append)
    # The version with the most traffic first, each as its runtime spec (traffic is the table's).
    assert target.calls == [("ensure", (*SPAM, "stable")), ("ensure", (*SPAM, "canary"))]
    assert target.running[(*SPAM, "stable")].min_replicas == 2
    assert {spec.weight for spec in target.running.values()} == {0}
    assert lines == [
        "restoring the replicas of apply #1 (deploy.yaml)",
        "  mail/spam/stable: 2 replica(s) ready",
        "  mail/spam/canary: 1 replica(s) ready",
    ]
    assert [record.id for record in stores[0].history()] == [1]  # the history says what was applied
    assert stores[1].revision() == revision  # the routing table was not touched


def test_a_version_that_does_not_come_back_is_reported_and_the_others_still_start(
    stores: tuple[DeployStore, RouteStore],
) -> None:
    restarted(stores)[0].apply(FILE, user="alice")
    service, target, lines = restarted(stores)
    target.fail.add((*SPAM, "stable"))
    assert not service.restore(lines.append)
    assert list(target.running) == [(*SPAM, "canary")]
    assert "  mail/spam/stable FAILED: model 'mail/spam/stable' is not ready" in lines[1]


def test_a_file_the_policy_now_refuses_is_not_restored(
    stores: tuple[DeployStore, RouteStore], tmp_path: Path
) -> None:
    local = FILE.replace("spam/7", str(tmp_path / "spam.onnx"))
    applied = restarted(stores, DeployPolicy(allow_local_paths=True))[0].apply(local, user="alice")
    assert applied.result.ok
    service, target, lines = restarted(stores)  # restarted without --allow-local-paths
    assert not service.restore(lines.append)
    assert target.calls == []
    assert lines[0].startswith("apply #1 not restored: ")
    assert "--allow-local-paths" in lines[0]
