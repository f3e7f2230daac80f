"""``deploy apply`` hands a version with a rollout to the controller, and leaves it alone after."""

from __future__ import annotations

import pytest

from modelyard.deploy.service import DeployService
from modelyard.deploy.state import DeployStore
from modelyard.errors import Conflict
from modelyard.rollout import schema as s
from modelyard.rollout.controller import Controller
from tests.deploy.support import RecordingTarget
from tests.rollout.support import CANARY, M, P, World, deploy_file

FILE = deploy_file(CANARY)


def _service(world: World, controller: Controller | None) -> DeployService:
    return DeployService(DeployStore(world.engine), world.routes, RecordingTarget(), rollouts=controller)


def test_apply_starts_the_rollout_instead_of_setting_weights(world: World) -> None:
    service = _service(world, world.controller)
    outcome = service.apply(FILE, user="alice", source="deploy.yaml")
    assert outcome.result.ok, outcome.result.error
    assert any("rollout #1: v2 from v1 (canary, 4 steps" in line for line in outcome.log)
    assert world.traffic() == (100, 0, 1.0)
    assert (world.latest().state, world.latest().created_by) == (s.RUNNING, "alice")


def test_the_same_file_again_leaves_the_rollout_where_it_is(world: World) -> None:
    service = _service(world, world.controller)
    service.apply(FILE, user="alice")
    world.pass_step(mirror=True)
    assert world.traffic() == (95, 5, None)
    plan, _ = service.diff(FILE)
    assert plan.empty, plan.drift  # a rollout's steps are neither drift nor an update
    outcome = service.apply(FILE, user="alice")
    assert outcome.result.ok
    assert world.traffic() == (95, 5, None)
    assert world.latest().id == 1


def test_a_changed_rollout_supersedes_the_running_one_and_starts_over(world: World) -> None:
    service = _service(world, world.controller)
    service.apply(FILE, user="alice")
    world.pass_step(mirror=True)
    changed = deploy_file(CANARY.replace("min_requests: 100", "min_requests: 50"))
    outcome = service.apply(changed, user="bob")
    assert outcome.result.ok, outcome.result.error
    first, second = world.store.get(1), world.latest()
    assert (first.state, second.id, second.state, second.step) == (s.SUPERSEDED, 2, s.RUNNING, 0)
    assert world.store.events(1)[-1].actor == "bob"
    assert world.traffic() == (100, 0, 1.0)


def test_a_file_without_the_rollout_supersedes_it(world: World) -> None:
    service = _service(world, world.controller)
    service.apply(FILE, user="alice")
    world.pass_step(mirror=True)
    plain = (
        f"deployments:\n- project: {P}\n  model: {M}\n  versions:\n"
        "  - version: v1\n    spec: {uri: spam/1, weight: 100}\n"
    )
    assert service.apply(plain, user="bob").result.ok
    assert world.latest().state == s.SUPERSEDED
    world.controller.tick()
    assert [(v.version, v.weight) for v in world.routes.get(P, M).versions] == [("v1", 100)]


def test_a_finished_rollout_is_not_undone_by_applying_its_file_again(world: World) -> None:
    service = _service(world, world.controller)
    service.apply(FILE, user="alice")
    for mirror in (True, False, False, False):
        world.pass_step(mirror=mirror)
    assert world.traffic() == (0, 100, None)
    assert service.apply(FILE, user="alice").result.ok
    assert world.traffic() == (0, 100, None)


def test_without_a_controller_a_rollout_fails_its_step_and_nothing_starts(world: World) -> None:
    target = RecordingTarget()
    service = DeployService(DeployStore(world.engine), world.routes, target)
    outcome = service.apply(FILE, user="alice")
    assert not outcome.result.ok
    assert "runs no rollout controller" in (outcome.result.error or "")
    assert target.calls == []


def test_without_an_analysis_a_rollout_is_refused(world: World) -> None:
    blind = Controller(world.store, world.routes, None, clock=world.clock)
    outcome = _service(world, blind).apply(FILE, user="alice")
    assert not outcome.result.ok
    assert "no online analysis" in (outcome.result.error or "")


def test_a_route_that_logs_no_answers_is_refused(world: World) -> None:
    world.routes.set_weights(P, M, {"v1": 100})
    world.routes.set_options(P, M, log_payload="none")
    outcome = _service(world, world.controller).apply(FILE, user="alice")
    assert not outcome.result.ok
    assert "log_payload 'none'" in (outcome.result.error or "")


def test_agreement_needs_the_answers_logged_in_full(world: World) -> None:
    # With hashes, two versions' answers never match (an OIP answer names its model_version).
    world.routes.set_options(P, M, log_payload="hash")
    target = RecordingTarget()
    outcome = DeployService(DeployStore(world.engine), world.routes, target, rollouts=world.controller).apply(
        FILE, user="alice"
    )
    assert not outcome.result.ok
    error = outcome.result.error or ""
    assert "the route mail/spam has log_payload 'hash', but min_agreement compares" in error
    assert "`modelyard route options mail/spam --log-payload full`" in error
    assert target.calls == []  # refused before any replica starts
    assert world.store.latest(P, M) is None


def test_a_rollout_on_a_route_not_there_yet_is_told_how_to_log_in_full(world: World) -> None:
    world.routes.delete(P, M)  # the apply would create it, logging hashes
    outcome = _service(world, world.controller).apply(FILE, user="alice")
    assert not outcome.result.ok
    error = outcome.result.error or ""
    assert "mail/spam has no route yet, and a new route gets log_payload 'hash'" in error
    assert "apply the file without the rollout first, then `modelyard route options" in error


def test_a_rollout_without_min_agreement_runs_on_hashes(world: World) -> None:
    world.routes.set_options(P, M, log_payload="hash")
    errors_only = CANARY.replace(", min_agreement: 0.98", "")
    outcome = _service(world, world.controller).apply(deploy_file(errors_only), user="alice")
    assert outcome.result.ok, outcome.result.error
    assert world.latest().state == s.RUNNING


def test_a_retry_is_refused_once_the_route_logs_hashes(world: World) -> None:
    world.start()
    world.controller.abort(P, M, user="bob")
    world.routes.set_options(P, M, log_payload="hash")
    with pytest.raises(Conflict, match="cannot be retried: the route mail/spam has log_payload 'hash'"):
        world.controller.retry(P, M, user="bob")
