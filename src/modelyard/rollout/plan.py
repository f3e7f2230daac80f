"""What traffic a rollout wants in each of its states, and how long it may take: pure functions.

The controller never remembers that it "already set" a weight: every tick it compares the route
with :func:`wanted` for the state in the database and writes only the difference. So a control
plane that died between writing a state and writing the traffic, or a weight changed by hand under
a running rollout, is put right on the next tick.

A weight step's percent is of the baseline's share (its weight in the file, ``baseline_weight``):
with the baseline the only other weighted version, that is the percent of all requests.
"""

from __future__ import annotations

import dataclasses

from modelyard.deploy.spec import Deployment, Rollout, RolloutStep
from modelyard.rollout import schema as s
from modelyard.validation.evidence import ComparePolicy

__all__ = [
    "INCONCLUSIVE_GRACE",
    "Traffic",
    "baseline_share",
    "bounds_s",
    "compare_policy",
    "describe_step",
    "describe_steps",
    "rollout_of",
    "split",
    "wanted",
]

# An inconclusive step waits up to this many times its own duration more for evidence, then fails.
INCONCLUSIVE_GRACE = 3.0


@dataclasses.dataclass(frozen=True)
class Traffic:
    """The candidate's and the baseline's weights, and the share mirrored to the candidate."""

    candidate: int
    baseline: int
    mirror: float | None = None


def split(baseline_weight: int, percent: int) -> tuple[int, int]:
    """``percent`` of the baseline's weight to the candidate: ``(candidate, baseline)``; each side
    keeps at least 1 so that a step never sends everything, or nothing, to one of them."""
    candidate = round(baseline_weight * percent / 100)
    candidate = min(max(candidate, 1), baseline_weight - 1)
    return candidate, baseline_weight - candidate


def wanted(spec: Rollout, state: str, step: int, baseline_weight: int) -> Traffic | None:
    """The traffic of a rollout in ``state`` at ``step``; None once a later apply superseded it
    (the file's traffic then stands)."""
    back = Traffic(0, baseline_weight)
    if state == s.SUPERSEDED:
        return None
    if state in (s.HALTED, s.ROLLED_BACK, s.ABORTED):
        return back
    if state == s.SUCCEEDED or step >= len(spec.steps):
        return Traffic(baseline_weight, 0)
    current = spec.steps[step]
    if current.mirror is not None:
        return Traffic(0, baseline_weight, float(current.mirror))
    assert current.weight is not None
    return Traffic(*split(baseline_weight, current.weight))


def bounds_s(spec: Rollout) -> tuple[float, float]:
    """The shortest and the longest time the rollout can take to finish (every step passing at
    its end, or each waiting out its grace for evidence), the hold after promotion included."""
    steps = sum(step.duration for step in spec.steps)
    return steps + spec.hold_s, steps * (1 + INCONCLUSIVE_GRACE) + spec.hold_s


def describe_step(spec: Rollout, step: int) -> str:
    """``mirror 100% for 5m`` / ``weight 5% for 10m`` / ``promoted, baseline kept 10m``."""
    if step >= len(spec.steps):
        hold = spec.hold_s
        return f"promoted, baseline kept ready {_duration(hold)}" if hold else "promoted"
    current: RolloutStep = spec.steps[step]
    if current.mirror is not None:
        return f"mirror {current.mirror:.0%} for {_duration(current.duration)}"
    return f"weight {current.weight}% for {_duration(current.duration)}"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def describe_steps(spec: Rollout) -> str:
    """Every step in words, comma-separated: ``mirror 100% for 5m, weight 5% for 10m``."""
    return ", ".join(describe_step(spec, i) for i in range(len(spec.steps)))


def compare_policy(spec: Rollout) -> ComparePolicy:
    """How the analysis compares the rollout's answers: ``compare``'s tolerances and output kinds,
    and the gates' ``min_agreement`` (for the pairs' own verdict; the step's gate reads the counts)."""
    compare = spec.compare
    return ComparePolicy(
        abs_tol=compare.abs_tol,
        rel_tol=compare.rel_tol,
        outputs=dict(compare.outputs),
        min_agreement=spec.gates.min_agreement,
    )


def rollout_of(deployment: Deployment) -> Rollout:
    """The rollout block of the deployment's candidate (it has one)."""
    candidate = deployment.rollout_version
    assert candidate is not None
    assert candidate.spec.rollout is not None
    return candidate.spec.rollout


def baseline_share(deployment: Deployment) -> int:
    """The baseline's weight, the whole that steps take percents of: 100 when the baseline is the
    only weighted version and weighs less (so that 5 % is 5 of 100, not 0 of 1)."""
    spec = rollout_of(deployment)
    steered = deployment.steered
    baseline = next(v for v in deployment.versions if v.version == spec.baseline).spec.weight
    others = any(v.spec.weight for v in deployment.versions if v.version not in steered)
    return baseline if others else max(baseline, 100)
