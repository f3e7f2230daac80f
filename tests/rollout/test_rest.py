"""The rollouts API on a live control plane: status with the gates, actions under the caller's name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.access.store import TokenStore
from modelyard.control.app import build_control_app
from modelyard.deploy.client import DeployClient
from modelyard.errors import Conflict, Forbidden, NotFound
from modelyard.registry import ControlSettings, Registry
from modelyard.rollout.client import RolloutClient
from modelyard.routing.store import RouteStore
from modelyard.web.access import Role
from tests.deploy.support import RecordingTarget
from tests.rollout.support import CANARY, FakeEvidence, M, P, deploy_file, log_in_full
from tests.support import serve_in_thread

Live = tuple[str, dict[Role, str], FakeEvidence, RouteStore]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings = ControlSettings(home=tmp_path / "home", analysis_log="none")
    with Registry(settings) as registry:
        tokens = TokenStore(registry.engine)
        made = {role: tokens.create(f"t-{role.label}", role, created_by="test")[1] for role in Role}
        app = build_control_app(settings, registry, target=RecordingTarget())
        evidence = FakeEvidence()
        app.state.rollouts.evidence = evidence  # the stand-in the test feeds
        routes = RouteStore(registry.engine)
        log_in_full(routes)
        with serve_in_thread(app) as at:
            yield f"http://{at}", made, evidence, routes


def _wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("the controller did not get there in time")


def test_status_shows_the_step_the_time_left_and_each_gate(live: Live) -> None:
    url, tokens, evidence, _ = live
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:
        assert deploy.apply(deploy_file(CANARY))["ok"]
    evidence.add("v2", mirrored=40, compared=40, agreed=39)
    with RolloutClient(url, token=tokens[Role.VIEWER]) as rollouts:
        found = rollouts.show(P, M)
        listed = rollouts.list()
    assert (found["state"], found["at"]) == ("running", "mirror 100% for 10s")
    assert found["created_by"] == "t-deployer"
    assert 0 < found["time_left_s"] <= 10
    reading = found["reading"]
    assert (reading["count"], reading["needed"], reading["outcome"]) == (40, 100, "inconclusive")
    agreement = next(g for g in reading["gates"] if g["name"] == "agreement")
    assert (agreement["value"], agreement["threshold"]) == (0.975, 0.98)
    assert [e["event"] for e in found["events"]] == ["started"]
    assert [r["id"] for r in listed] == [found["id"]]


def test_actions_need_a_deployer_and_record_who_acted(live: Live) -> None:
    url, tokens, _, routes = live
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:
        deploy.apply(deploy_file(CANARY))
    with RolloutClient(url, token=tokens[Role.VIEWER]) as viewer, pytest.raises(Forbidden):
        viewer.act(P, M, "abort")
    with RolloutClient(url, token=tokens[Role.DEPLOYER]) as deployer:
        paused = deployer.act(P, M, "pause", reason="looking")
        promoted = deployer.act(P, M, "promote")
    assert paused["state"] == "paused"
    assert promoted["state"] == "succeeded"
    last = promoted["events"][-1]
    assert (last["event"], last["actor"]) == ("promoted", "t-deployer")
    assert {v.version: v.weight for v in routes.get(P, M).versions} == {"v1": 0, "v2": 100}


def test_the_loop_rolls_back_a_bad_candidate_by_itself(live: Live) -> None:
    url, tokens, evidence, routes = live
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:
        deploy.apply(deploy_file(CANARY))
    evidence.add("v2", mirrored=200, compared=200, agreed=10)
    with RolloutClient(url, token=tokens[Role.VIEWER]) as rollouts:
        _wait_for(lambda: rollouts.show(P, M)["state"] == "rolled_back")
        found = rollouts.show(P, M)
    assert found["events"][-1]["actor"] == "controller"
    assert "agreement 0.05" in found["reason"]
    v2 = routes.get(P, M).version("v2")
    assert v2 is not None
    assert (v2.weight, v2.mirror) == (0, False)


def test_retry_starts_an_aborted_rollout_again_under_the_callers_name(live: Live) -> None:
    url, tokens, _, routes = live
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:
        deploy.apply(deploy_file(CANARY))
    with RolloutClient(url, token=tokens[Role.DEPLOYER]) as deployer:
        deployer.act(P, M, "pause")
        deployer.act(P, M, "promote")  # succeeded: nothing to retry
        with pytest.raises(Conflict, match="rollout #1 of mail/spam succeeded"):
            deployer.act(P, M, "retry")
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:  # a new candidate, then aborted
        deploy.apply(deploy_file(CANARY.replace("for: 10s}, {weight: 5", "for: 20s}, {weight: 5")))
    with RolloutClient(url, token=tokens[Role.DEPLOYER]) as deployer:
        assert deployer.act(P, M, "abort")["state"] == "aborted"
    with RolloutClient(url, token=tokens[Role.VIEWER]) as viewer, pytest.raises(Forbidden):
        viewer.act(P, M, "retry")
    with RolloutClient(url, token=tokens[Role.DEPLOYER]) as deployer:
        retried = deployer.act(P, M, "retry", reason="once more")
    assert (retried["id"], retried["state"], retried["at"]) == (3, "running", "mirror 100% for 20s")
    assert (retried["created_by"], retried["events"][0]["actor"]) == ("t-deployer", "t-deployer")
    assert retried["events"][0]["reason"].startswith("retry of rollout #2 (aborted) by hand: once more; ")
    v2 = routes.get(P, M).version("v2")
    assert v2 is not None
    assert (v2.weight, v2.mirror_fraction) == (0, 1.0)
    headers = {"authorization": f"Bearer {tokens[Role.DEPLOYER]}"}
    again = httpx.post(f"{url}/api/v1/rollouts/{P}/{M}/retry", headers=headers, json={}, trust_env=False)
    assert again.status_code == 409
    assert "rollout #3 of mail/spam is running, not ended" in again.text


def test_a_model_without_a_rollout_is_not_found(live: Live) -> None:
    url, tokens, _, _ = live
    with RolloutClient(url, token=tokens[Role.VIEWER]) as rollouts, pytest.raises(NotFound):
        rollouts.show(P, M)


def test_a_control_plane_without_an_analysis_refuses_rollouts(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home", analysis_log="none")
    with Registry(settings) as registry:
        app = build_control_app(settings, registry, target=RecordingTarget())
        with serve_in_thread(app) as at, DeployClient(f"http://{at}") as deploy:
            outcome = deploy.apply(deploy_file(CANARY))
    assert not outcome["ok"]
    assert "no online analysis" in outcome["error"]


def test_pages_go_back_through_every_rollout_and_every_transition(live: Live) -> None:
    url, tokens, _, _ = live
    with DeployClient(url, token=tokens[Role.DEPLOYER]) as deploy:
        deploy.apply(deploy_file(CANARY))
    with RolloutClient(url, token=tokens[Role.DEPLOYER]) as deployer:
        for action in ("pause", "resume", "abort", "retry"):
            deployer.act(P, M, action)
        assert [r["id"] for r in deployer.list(limit=1)] == [2]
        assert [r["id"] for r in deployer.list(limit=1, before=2)] == [1]
        assert [(r["id"], r["state"]) for r in deployer.latest()] == [(2, "running")]
        pages, before = [], None
        while True:
            page = deployer.events(limit=2, before=before)
            pages.append([(e["rollout_id"], e["event"], e["model"], e["candidate"]) for e in page["events"]])
            if (before := page["next"]) is None:
                break
    assert pages == [
        [(2, "started", M, "v2"), (1, "aborted", M, "v2")],
        [(1, "resumed", M, "v2"), (1, "paused", M, "v2")],
        [(1, "started", M, "v2")],
    ]
    headers = {"authorization": f"Bearer {tokens[Role.VIEWER]}"}
    for query in ("limit=0", "limit=501", "before=0", "before=x"):
        answer = httpx.get(f"{url}/api/v1/rollouts/events?{query}", headers=headers, trust_env=False)
        assert answer.status_code == 400, (query, answer.text)
