"""The rollout state machine, on a real database with a fake clock and a stand-in Evidence."""

from __future__ import annotations

import pytest

from modelyard.errors import Conflict, NotFound
from modelyard.rollout import schema as s
from tests.rollout.support import CANARY, FakeEvidence, M, P, World, deploy_file


def test_a_good_candidate_walks_every_step_to_all_traffic(world: World) -> None:
    record = world.start()
    assert record.state == s.RUNNING
    assert world.traffic() == (100, 0, 1.0)  # the mirror step: users still get v1's answers
    world.pass_step(mirror=True)
    assert world.traffic() == (95, 5, None)
    world.pass_step(mirror=False)
    assert world.traffic() == (75, 25, None)
    world.pass_step(mirror=False)
    assert world.traffic() == (50, 50, None)
    world.pass_step(mirror=False)
    assert world.traffic() == (0, 100, None)  # the baseline drained, still routed (weight 0)
    assert world.latest().state == s.SUCCEEDED
    assert world.events() == ["started", "advanced", "advanced", "advanced", "promoted"]
    promoted = world.store.events(world.latest().id)[-1]
    assert promoted.actor == "controller"
    assert promoted.figures["outcome"] == "pass"
    assert {g["name"] for g in promoted.figures["gates"]} == {"error_rate", "p99_ratio"}


def test_a_step_does_not_pass_before_its_time(world: World) -> None:
    world.start()
    world.evidence.add("v2", mirrored=500, compared=500)
    world.evidence.add("v1", requests=500)
    world.clock.advance(9.9)
    world.controller.tick()
    assert world.traffic() == (100, 0, 1.0)
    world.clock.advance(0.2)
    world.controller.tick()
    assert world.traffic() == (95, 5, None)


def test_errors_roll_back_at_the_first_weighted_step_at_once(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=250, errors=50)  # 20 % answered 500
    world.evidence.add("v1", requests=1000)
    world.clock.advance(1)  # long before the step's end: a clear failure does not wait
    world.controller.tick()
    latest = world.latest()
    assert latest.state == s.ROLLED_BACK
    assert world.traffic() == (100, 0, None)  # the candidate kept, at weight 0, for inspection
    assert "error_rate 0.2" in latest.reason
    assert "step 2/4 (weight 5% for 10s) failed" in latest.reason
    event = world.store.events(latest.id)[-1]
    assert (event.event, event.actor, event.step) == ("rolled_back", "controller", 1)
    assert event.figures["figures"]["candidate_errors"] == 50
    gate = next(g for g in event.figures["gates"] if g["name"] == "error_rate")
    assert (gate["value"], gate["threshold"], gate["outcome"]) == (0.2, 0.01, "fail")


def test_a_slower_candidate_fails_the_latency_gate(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=200, latency_ms=30)  # 3x the baseline's 10 ms
    world.evidence.add("v1", requests=800, latency_ms=10)
    world.clock.advance(10)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert "p99_ratio 3" in world.latest().reason
    assert world.traffic() == (100, 0, None)


def test_a_candidate_as_slow_as_the_ratio_allows_passes(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=200, latency_ms=1.2)  # 1.5x: bucket (1.15, 1.3] against (0.75, 0.85]
    world.evidence.add("v1", requests=800, latency_ms=0.8)
    world.clock.advance(10)
    world.controller.tick()
    assert world.traffic() == (75, 25, None)


def test_a_candidate_1_9x_slower_fails_the_p99_gate(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=200, latency_ms=1.5)  # 1.875x: (1.3, 1.5] starts above 1.5 x 0.85
    world.evidence.add("v1", requests=800, latency_ms=0.8)
    world.clock.advance(10)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert "p99_ratio" in world.latest().reason


def test_one_slow_request_does_not_roll_back_a_good_candidate(world: World) -> None:
    world.start(deploy_file(CANARY.replace("min_requests: 100", "min_requests: 20")))
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=30, latency_ms=5)
    world.evidence.add("v2", requests=1, latency_ms=200)  # of 31 latencies, the p99 is this one
    world.evidence.add("v1", requests=300, latency_ms=5)
    for seconds in (2, 8):  # mid-step, then at the step's end: 31 latencies are no p99
        world.clock.advance(seconds)
        world.controller.tick()
        assert world.latest().state == s.RUNNING
    world.pass_step(mirror=False, seconds=1)  # 231 latencies: the slow one is no longer the p99
    assert world.traffic() == (75, 25, None)


def test_a_slow_candidate_is_rolled_back_at_the_steps_end_not_before(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=120, latency_ms=30)  # 3x the baseline's 10 ms
    world.evidence.add("v1", requests=800, latency_ms=10)
    world.clock.advance(5)
    world.controller.tick()
    assert world.latest().state == s.RUNNING  # a p99 is judged on the whole step
    world.clock.advance(5)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert "step 2/4 (weight 5% for 10s) failed: p99_ratio 3" in world.latest().reason


def test_a_p99_short_of_latencies_at_the_steps_end_is_read_once_they_come(world: World) -> None:
    world.start(deploy_file(CANARY.replace("min_requests: 100", "min_requests: 20")))
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=60, latency_ms=30)
    world.evidence.add("v1", requests=800, latency_ms=10)
    world.clock.advance(10)
    world.controller.tick()
    assert world.latest().state == s.RUNNING  # 60 latencies are no p99: it waits in the grace
    assert world.traffic() == (95, 5, None)
    world.evidence.add("v2", requests=60, latency_ms=30)
    world.clock.advance(1)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert "p99_ratio 3" in world.latest().reason


def test_wrong_answers_are_rolled_back_while_mirrored_before_any_user_sees_one(world: World) -> None:
    world.start()
    seen: list[tuple[int, int, float | None]] = [world.traffic()]
    world.evidence.add("v2", mirrored=200, compared=200, agreed=150)
    world.evidence.add("v1", requests=200)
    world.clock.advance(2)
    world.controller.tick()
    seen.append(world.traffic())
    assert world.latest().state == s.ROLLED_BACK
    assert "agreement 0.75" in world.latest().reason
    assert all(v2 == 0 for _, v2, _ in seen)
    assert seen[-1] == (100, 0, None)
    assert "advanced" not in world.events()
    # agreement is read against the rollout's own baseline, not every version mirrored beside it
    assert world.evidence.baselines == {"v1"}


def test_too_few_requests_is_inconclusive_then_a_failure(world: World) -> None:
    world.start()
    world.evidence.add("v2", mirrored=40, compared=40)
    world.evidence.add("v1", requests=40)
    world.clock.advance(10)
    world.controller.tick()
    assert world.latest().state == s.RUNNING  # not a pass: it waits for evidence
    world.clock.advance(29)  # 3x the step more
    world.controller.tick()
    assert world.latest().state == s.RUNNING
    world.clock.advance(1.5)
    world.controller.tick()
    latest = world.latest()
    assert latest.state == s.ROLLED_BACK
    assert "inconclusive" in latest.reason
    assert "too few requests: 40 seen, 100 needed (min_requests)" in latest.reason


def test_evidence_arriving_within_the_grace_passes(world: World) -> None:
    world.start()
    world.clock.advance(15)
    world.controller.tick()
    assert world.traffic() == (100, 0, 1.0)
    world.pass_step(mirror=True, seconds=1)
    assert world.traffic() == (95, 5, None)


def test_unreadable_evidence_is_inconclusive_then_rolls_back(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.ok = False
    world.evidence.add("v2", requests=500)  # figures the controller cannot trust now
    world.evidence.add("v1", requests=500)
    world.clock.advance(30)
    world.controller.tick()
    assert world.latest().state == s.RUNNING
    assert world.latest().blind_since == world.clock.now
    world.clock.advance(59)
    world.controller.tick()
    assert world.traffic() == (95, 5, None)
    world.clock.advance(2)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert "could not be read for 61s" in world.latest().reason
    assert world.traffic() == (100, 0, None)


def test_on_failure_pause_holds_the_baseline_and_waits_for_a_person(world: World) -> None:
    text = deploy_file(CANARY.replace("}}", "}, on_failure: pause}"))
    world.start(text)
    world.evidence.add("v2", mirrored=200, compared=200, agreed=100)
    world.clock.advance(1)
    world.controller.tick()
    assert world.latest().state == s.HALTED
    assert world.traffic() == (100, 0, None)
    world.clock.advance(3600)  # nobody acts: it stays halted, traffic on the baseline only
    world.controller.tick()
    assert world.latest().state == s.HALTED
    world.controller.promote(P, M, user="bob", reason="the comparison was wrong")
    assert world.latest().state == s.SUCCEEDED
    assert world.traffic() == (0, 100, None)
    event = world.store.events(world.latest().id)[-1]
    assert (event.actor, event.reason) == ("bob", "promoted by hand: the comparison was wrong; 100% to v2")


def test_pause_holds_the_step_and_resume_starts_it_over(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.controller.pause(P, M, user="bob")
    world.pass_step(mirror=False, seconds=60)  # passing gates do not move a paused rollout
    assert (world.latest().state, world.traffic()) == (s.PAUSED, (95, 5, None))
    with pytest.raises(Conflict):
        world.controller.pause(P, M, user="bob")
    world.controller.resume(P, M, user="carol")
    world.clock.advance(9)
    world.controller.tick()
    assert world.traffic() == (95, 5, None)  # the step's time starts again
    world.pass_step(mirror=False, seconds=1)
    assert world.traffic() == (75, 25, None)
    assert world.events() == ["started", "advanced", "paused", "resumed", "advanced"]
    assert [e.actor for e in world.store.events(world.latest().id)][2:4] == ["bob", "carol"]


def test_a_paused_rollout_still_rolls_back_on_failure(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.controller.pause(P, M, user="bob")
    world.evidence.add("v2", requests=200, errors=100)
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
    assert world.traffic() == (100, 0, None)


def test_abort_sends_traffic_back_at_once_and_ends_the_rollout(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.pass_step(mirror=False)
    assert world.traffic() == (75, 25, None)
    record = world.controller.abort(P, M, user="bob", reason="pager")
    assert record.state == s.ABORTED
    assert world.traffic() == (100, 0, None)
    assert world.store.events(record.id)[-1].actor == "bob"
    with pytest.raises(Conflict):
        world.controller.resume(P, M, user="bob")
    world.pass_step(mirror=False)
    assert world.traffic() == (100, 0, None)  # an ended rollout moves nothing


def test_promote_by_hand_skips_the_remaining_steps(world: World) -> None:
    world.start()
    world.controller.promote(P, M, user="bob")
    assert world.latest().state == s.SUCCEEDED
    assert world.traffic() == (0, 100, None)


def test_acting_on_a_model_without_a_rollout_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.controller.abort(P, M, user="bob")


def test_a_restarted_control_plane_resumes_the_step_where_it_was(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=150)  # enough (100 needed), but the step has 4 s to go
    world.evidence.add("v1", requests=600)
    world.clock.advance(6)
    world.controller.tick()  # the old control plane holds the lease, then dies (no stop_loop)
    after = world.another_controller()
    after.tick()
    assert world.traffic() == (95, 5, None)
    world.clock.advance(4)  # the step's own clock, from the database: 10 s in all
    after.tick()
    assert world.traffic() == (95, 5, None)  # the dead control plane's lease has not lapsed yet
    world.clock.advance(6)
    after.tick()
    assert world.traffic() == (75, 25, None)  # the step's evidence counted from its old snapshot
    assert world.store.events(world.latest().id)[-1].figures["count"] == 150


def test_a_restarted_analysis_restarts_the_steps_window(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=150)
    world.clock.advance(5)
    world.controller.tick()
    empty = FakeEvidence()  # the analysis restarted with empty counters
    after = world.another_controller(empty)
    world.clock.advance(10)  # past the old lease and past the step's time
    after.tick()
    assert world.events()[-1] == "window_restarted"
    assert world.traffic() == (95, 5, None)
    empty.add("v2", requests=200)
    empty.add("v1", requests=800)
    world.clock.advance(9)
    after.tick()
    assert world.traffic() == (95, 5, None)  # the window started again: 10 s from the restart
    world.clock.advance(1)
    after.tick()
    assert world.traffic() == (75, 25, None)


def test_traffic_changed_by_hand_under_a_rollout_is_put_back(world: World) -> None:
    world.start()
    world.pass_step(mirror=True)
    world.routes.set_weights(P, M, {"v1": 10, "v2": 90})
    world.controller.tick()
    assert world.traffic() == (95, 5, None)


def test_a_second_control_plane_waits_for_the_lease(world: World) -> None:
    world.start()
    world.controller.tick()
    other = world.another_controller()
    world.evidence.add("v2", mirrored=200, compared=200, agreed=0)
    other.tick()
    assert world.latest().state == s.RUNNING  # the first one holds the lease
    world.controller.tick()
    assert world.latest().state == s.ROLLED_BACK
