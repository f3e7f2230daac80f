"""Blue-green: shadowed and gated, then all traffic at once, the baseline kept ready for a while."""

from __future__ import annotations

from modelyard.rollout import schema as s
from tests.rollout.support import World, deploy_file

BLUE_GREEN = deploy_file(
    "{strategy: blue-green, baseline: v1, steps: [{mirror: 1.0, for: 10s}], keep_baseline_for: 30s,"
    " gates: {min_requests: 100, max_error_rate: 0.01, min_agreement: 0.99}}"
)


def test_blue_green_takes_all_traffic_at_once_and_keeps_blue_ready(world: World) -> None:
    world.start(BLUE_GREEN)
    assert world.traffic() == (100, 0, 1.0)
    world.pass_step(mirror=True)
    latest = world.latest()
    assert (latest.state, world.traffic()) == (s.RUNNING, (0, 100, None))
    assert "v1 kept ready 30s" in latest.reason
    world.evidence.add("v2", requests=500)
    world.clock.advance(30)
    world.controller.tick()
    assert world.latest().state == s.SUCCEEDED
    assert world.traffic() == (0, 100, None)
    assert world.events() == ["started", "promoted", "succeeded"]


def test_a_failure_while_blue_is_kept_returns_to_blue_at_once(world: World) -> None:
    world.start(BLUE_GREEN)
    world.pass_step(mirror=True)
    world.evidence.add("v2", requests=200, errors=30)
    world.clock.advance(1)
    world.controller.tick()
    latest = world.latest()
    assert latest.state == s.ROLLED_BACK
    assert "the hold after promotion failed: error_rate 0.15" in latest.reason
    assert world.traffic() == (100, 0, None)


def test_a_quiet_hold_still_ends_the_rollout(world: World) -> None:
    world.start(BLUE_GREEN)
    world.pass_step(mirror=True)
    world.clock.advance(31)  # no requests at all after promotion: the decision stands
    world.controller.tick()
    assert world.latest().state == s.SUCCEEDED


def test_a_small_baseline_weight_is_taken_as_the_whole(world: World) -> None:
    text = deploy_file(
        "{baseline: v1, steps: [{weight: 10, for: 10s}], gates: {min_requests: 10, max_error_rate: 0.1}}",
        baseline_weight=1,
    )
    world.start(text)
    assert world.traffic() == (90, 10, None)
    world.pass_step(mirror=False)
    assert world.traffic() == (0, 100, None)
