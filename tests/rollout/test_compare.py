"""A rollout's ``compare`` block: the controller has the analysis compare the route's answers as the
block says, before it reads or snapshots any figure, on every tick (a restarted control plane
sets it again), and a good candidate whose answers differ within the block's tolerances passes."""

from __future__ import annotations

import pytest

from modelyard.rollout import schema as s
from modelyard.rollout.plan import compare_policy
from modelyard.validation.evidence import ComparePolicy
from modelyard.validation.online import OnlineAnalysis
from modelyard.validation.policy import Policy
from tests.rollout.support import CANARY, FakeEvidence, M, P, World, deploy_file, deployment
from tests.validation.online_support import line, oip_body

COMPARE = ", compare: {abs_tol: 1.0e-4, rel_tol: 1.0e-3, outputs: {label: label, y: numeric}}}"
LOOSE = deploy_file(CANARY[:-1] + COMPARE)
WANTED = ComparePolicy(
    abs_tol=1e-4, rel_tol=1e-3, outputs={"label": "label", "y": "numeric"}, min_agreement=0.98
)


def test_the_rollouts_policy_is_its_compare_block_and_its_agreement_gate() -> None:
    spec = deployment(LOOSE).versions[1].spec.rollout
    assert spec is not None
    assert compare_policy(spec) == WANTED
    plain = deployment(deploy_file(CANARY)).versions[1].spec.rollout
    assert plain is not None
    defaults = Policy()
    assert compare_policy(plain) == ComparePolicy(defaults.abs_tol, defaults.rel_tol, {}, 0.98)


def test_the_controller_sets_the_policy_before_its_first_snapshot(world: World) -> None:
    world.start(LOOSE)
    assert world.evidence.policies == {(P, M): WANTED}
    assert world.evidence.calls[:2] == ["compare_with", "stats"]  # the snapshot's figures came after
    world.evidence.calls.clear()
    world.pass_step(mirror=True)
    assert world.evidence.calls[0] == "compare_with"
    assert world.traffic() == (95, 5, None)


def test_a_restarted_control_plane_sets_it_again(world: World) -> None:
    world.start(LOOSE)
    fresh = FakeEvidence()  # the new control plane's analysis knows no policy
    world.controller = world.another_controller(fresh)
    world.controller.tick()
    assert fresh.policies == {(P, M): WANTED}
    assert fresh.calls[0] == "compare_with"


def _near(count: int, start: int = 0) -> list[bytes]:
    """``count`` requests v1 answered and v2 answered mirrored, ``1e-4`` apart."""
    lines = []
    for i in range(start, start + count):
        value = 0.5 + i % 7
        lines.append(line(f"r{i}", "v1", body=oip_body([value]), project=P, model=M))
        lines.append(line(f"r{i}", "v2", "mirror", body=oip_body([value + 1e-4]), project=P, model=M))
    return lines


def _analysis() -> OnlineAnalysis:
    analysis = OnlineAnalysis()
    analysis.problem = None  # fed directly, as if it read a log (it has no source)
    return analysis


@pytest.mark.parametrize(("text", "state"), [(LOOSE, s.RUNNING), (deploy_file(CANARY), s.ROLLED_BACK)])
def test_a_candidate_within_the_blocks_tolerances_passes_its_mirror_step(
    world: World, text: str, state: str
) -> None:
    analysis = _analysis()
    analysis.feed(_near(50))  # compared under the analysis's default before the rollout
    world.controller = world.another_controller(analysis)
    world.start(text)
    analysis.feed(_near(200, start=50))
    world.clock.advance(10)
    world.controller.tick()
    latest = world.latest()
    assert latest.state == state
    if state == s.RUNNING:  # the mirror step passed on the block's tolerances
        assert (latest.step, world.traffic()) == (1, (95, 5, None))
        (pair,) = analysis.pairs(P, M)
        assert (pair["compared"], pair["agreed"], pair["verdict"]) == (200, 200, "pass")
    else:  # the default tolerances see every answer differ
        assert "agreement 0 (needs >= 0.98): fail" in latest.reason


def test_figures_compared_another_way_restart_the_steps_window(world: World) -> None:
    analysis = _analysis()
    analysis.compare_with(P, M, WANTED)  # already compared as the rollout will ask: kept
    analysis.feed(_near(80))
    world.controller = world.another_controller(analysis)
    world.start(LOOSE)
    assert world.latest().snapshot["candidate"]["compared"] == 80  # type: ignore[index]
    world.clock.advance(5)
    world.controller.tick()
    assert world.events() == ["started"]
    analysis.compare_with(P, M, Policy())  # the route compared another way meanwhile
    world.clock.advance(5)
    world.controller.tick()  # sets the rollout's comparison back: the pairs start again
    assert world.events() == ["started", "window_restarted"]
    assert "compares answers another way" in world.latest().reason
    assert world.latest().state == s.RUNNING
    assert world.latest().snapshot["candidate"]["compared"] == 0  # type: ignore[index]
    analysis.feed(_near(200, start=80))
    world.clock.advance(10)
    world.controller.tick()
    assert world.latest().step == 1
