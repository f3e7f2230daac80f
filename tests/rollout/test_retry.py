"""``deploy retry``: a rolled-back or aborted rollout started again, as the last applied file has
it, from its first step with a fresh evidence window; refused while one is in progress."""

from __future__ import annotations

import pytest

from modelyard.errors import Conflict, NotFound
from modelyard.rollout import schema as s
from tests.rollout.support import CANARY, M, P, World, deploy_file, deployment


def roll_back_at_the_first_weight_step(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=200, errors=100)
    world.evidence.add("v1", requests=800)
    world.clock.advance(1)
    world.controller.tick()
    assert (world.latest().state, world.latest().step) == (s.ROLLED_BACK, 1)


def test_a_retried_rollout_starts_from_the_first_step_with_a_fresh_window(world: World) -> None:
    roll_back_at_the_first_weight_step(world)
    failed = world.latest()
    world.clock.advance(5)
    retried = world.controller.retry(P, M, user="bob", reason="the flag is fixed")

    assert retried.id != failed.id
    assert (retried.state, retried.step, retried.step_started_at) == (s.RUNNING, 0, world.clock.now)
    assert world.traffic() == (100, 0, 1.0)  # the first step again: v2 mirrored, no user on it
    reading = world.controller.reading(retried)
    assert reading is not None
    assert (reading.count, reading.figures["candidate_errors"]) == (0, 0)  # nothing of the last try
    [started] = world.store.events(retried.id)
    assert (started.event, started.actor) == ("started", "bob")
    assert started.reason.startswith(
        "retry of rollout #1 (rolled_back) by hand: the flag is fixed; canary: mirror 100% for 10s"
    )
    assert world.store.get(failed.id).state == s.ROLLED_BACK  # the failed try keeps its history
    assert world.controller.steering(deployment(deploy_file(CANARY)))  # the same file: left alone

    world.clock.advance(9)
    world.controller.tick()
    assert world.traffic() == (100, 0, 1.0)  # the step's full time again
    world.pass_step(mirror=True, seconds=1)
    assert world.traffic() == (95, 5, None)


def test_an_aborted_rollout_can_be_retried(world: World) -> None:
    world.start()
    world.controller.abort(P, M, user="bob")
    assert world.controller.retry(P, M, user="bob").state == s.RUNNING
    assert world.traffic() == (100, 0, 1.0)


def test_retry_refuses_a_rollout_in_progress_and_names_its_state(world: World) -> None:
    with pytest.raises(NotFound, match="mail/spam has no rollout to retry"):
        world.controller.retry(P, M, user="bob")
    world.start()
    with pytest.raises(Conflict, match="rollout #1 of mail/spam is running, not ended: abort it first"):
        world.controller.retry(P, M, user="bob")
    world.controller.pause(P, M, user="bob")
    with pytest.raises(Conflict, match="is paused, not ended"):
        world.controller.retry(P, M, user="bob")
    world.controller.promote(P, M, user="bob")
    with pytest.raises(Conflict, match="rollout #1 of mail/spam succeeded: v2 has the traffic already"):
        world.controller.retry(P, M, user="bob")
    assert world.traffic() == (0, 100, None)


def test_a_halted_rollout_is_resumed_not_retried(world: World) -> None:
    world.start(deploy_file(CANARY.replace("}}", "}, on_failure: pause}")))
    world.evidence.add("v2", mirrored=200, compared=200, agreed=100)
    world.controller.tick()
    with pytest.raises(Conflict, match="is halted, not ended: resume or abort it"):
        world.controller.retry(P, M, user="bob")


def test_retry_refuses_what_the_last_applied_file_no_longer_asks_for(world: World) -> None:
    roll_back_at_the_first_weight_step(world)
    world.applied[(P, M)] = deployment(deploy_file(CANARY.replace("min_requests: 100", "min_requests: 50")))
    with pytest.raises(Conflict, match="the last applied deploy file no longer rolls v2 of mail/spam out"):
        world.controller.retry(P, M, user="bob")
    del world.applied[(P, M)]  # a file without mail/spam
    with pytest.raises(Conflict, match="no longer rolls v2"):
        world.controller.retry(P, M, user="bob")
    assert world.latest().state == s.ROLLED_BACK
    assert world.traffic() == (100, 0, None)


def test_retry_refuses_a_superseded_rollout(world: World) -> None:
    world.start()
    world.controller.stop(P, M, user="alice", reason="superseded by an apply")
    with pytest.raises(Conflict, match="was superseded by a later apply; nothing to retry"):
        world.controller.retry(P, M, user="bob")


def test_retry_refuses_what_this_control_plane_cannot_run(world: World) -> None:
    roll_back_at_the_first_weight_step(world)
    world.controller.evidence = None
    with pytest.raises(Conflict, match="#1 cannot be retried: this control plane has no online analysis"):
        world.controller.retry(P, M, user="bob")
