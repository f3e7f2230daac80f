"""Reading a step's gates from its own evidence: each gate passes, fails or is inconclusive.

A step's evidence is the candidate's and the baseline's :class:`VersionStats` accumulated since the
step's window started (``VersionStats.since``). What is counted depends on the step:

- a *mirror* step counts the candidate's answers compared with the baseline's (``compared``); its
  error rate is that of the mirrored copies, its latency that of the mirrored copies against the
  baseline's primary answers, and agreement is required;
- a *weight* step counts the candidate's primary answers (``requests``); error rate and latency are
  those users got; agreement is read only where the analysis compared answers;
- after promotion (the baseline kept ready) only the candidate's error rate is watched.

Below ``min_requests`` the step is inconclusive whatever the gates say, and a gate without data is
inconclusive, never a pass (no data is not zero errors). The p99 gate reads a histogram: it fails
only when the candidate's p99 bucket starts above ``max_p99_ratio`` times the baseline's p99 bucket
bound: with buckets at most 1.2x wide, a candidate up to the ratio slower always passes and one over
1.44x the ratio slower always fails (docs/rollout.md).

A p99 means something only over enough latencies: of fewer than 100 the empirical p99 is the
largest, so one slow request would decide it. Below :data:`P99_SAMPLES` timed answers on either
side the p99 gate is inconclusive, and its failure is acted on only at the step's end
(:meth:`Reading.failures`), on the whole step's latencies. Errors and wrong answers hurt users now,
so those gates may fail a step early; a slow answer is still a right one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from modelyard.deploy.spec import RolloutGates, RolloutStep
from modelyard.validation.evidence import LATENCY_BUCKETS_MS, P99_SAMPLES, VersionStats

__all__ = [
    "AT_END",
    "P99_SAMPLES",
    "GateReading",
    "Outcome",
    "Reading",
    "fell",
    "read_hold",
    "read_step",
    "stats_from",
    "stats_to",
]

Outcome = Literal["pass", "fail", "inconclusive"]

# Gates whose failure is read only at the step's end: a quantile read early swings both ways.
AT_END = frozenset({"p99_ratio"})


@dataclasses.dataclass(frozen=True)
class GateReading:
    """One gate: its value over the window (None: no data), the threshold, and the outcome."""

    name: str  # error_rate, p99_ratio, agreement
    value: float | None
    threshold: float
    outcome: Outcome
    bound: Literal["max", "min"]
    note: str = ""  # why an outcome is not what the value alone says, e.g. too few latencies

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        value = "no data" if self.value is None else f"{self.value:.4g}"
        sign = "<=" if self.bound == "max" else ">="
        note = f" ({self.note})" if self.note else ""
        return f"{self.name} {value} (needs {sign} {self.threshold:g}): {self.outcome}{note}"


@dataclasses.dataclass(frozen=True)
class Reading:
    """A step's gates at one moment: the evidence counted, how much is needed, each gate."""

    count: int
    needed: int
    gates: tuple[GateReading, ...]
    figures: dict[str, int]  # the window's raw counts, for the history

    @property
    def enough(self) -> bool:
        return self.count >= self.needed

    @property
    def outcome(self) -> Outcome:
        """``fail`` when a gate fails on enough evidence; ``pass`` when every gate passes on enough
        evidence; otherwise ``inconclusive``."""
        if not self.enough:
            return "inconclusive"
        outcomes = {gate.outcome for gate in self.gates}
        if "fail" in outcomes:
            return "fail"
        return "inconclusive" if "inconclusive" in outcomes else "pass"

    def failures(self, *, ended: bool = True) -> str:
        """The failing gates that fail the step now, one phrase (for a reason; "" when none): none
        below ``min_requests``; before the step's end (``ended`` False) only those that may fail
        early, not those of :data:`AT_END`."""
        if not self.enough:
            return ""
        failing = (g for g in self.gates if g.outcome == "fail" and (ended or g.name not in AT_END))
        return "; ".join(str(gate) for gate in failing)

    def missing(self) -> str:
        """Why the reading is inconclusive, one phrase."""
        if not self.enough:
            return f"too few requests: {self.count} seen, {self.needed} needed (min_requests)"
        return "; ".join(str(gate) for gate in self.gates if gate.outcome == "inconclusive")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "count": self.count,
            "needed": self.needed,
            "gates": [gate.to_dict() for gate in self.gates],
            "figures": dict(self.figures),
        }


def read_step(
    step: RolloutStep, gates: RolloutGates, candidate: VersionStats, baseline: VersionStats
) -> Reading:
    """The gates of ``step`` over a window in which ``candidate`` and ``baseline`` accumulated."""
    mirror = step.mirror is not None
    found: list[GateReading] = []
    if gates.max_error_rate is not None:
        rate = candidate.mirror_error_rate if mirror else candidate.error_rate
        found.append(_at_most("error_rate", rate, gates.max_error_rate))
    if gates.max_p99_ratio is not None:
        found.append(_p99_ratio(candidate, baseline, gates.max_p99_ratio, mirrored=mirror))
    if gates.min_agreement is not None and (mirror or candidate.compared):
        found.append(_at_least("agreement", candidate.agreement, gates.min_agreement))
    count = candidate.compared if mirror else candidate.requests
    return Reading(count, gates.min_requests, tuple(found), _figures(candidate, baseline))


def read_hold(gates: RolloutGates, candidate: VersionStats, baseline: VersionStats) -> Reading:
    """After promotion: the candidate serves everyone, so only its error rate can be judged."""
    found: list[GateReading] = []
    if gates.max_error_rate is not None:
        found.append(_at_most("error_rate", candidate.error_rate, gates.max_error_rate))
    return Reading(candidate.requests, gates.min_requests, tuple(found), _figures(candidate, baseline))


def _at_most(name: str, value: float | None, threshold: float) -> GateReading:
    outcome: Outcome = "inconclusive" if value is None else "pass" if value <= threshold else "fail"
    return GateReading(name, value, threshold, outcome, "max")


def _at_least(name: str, value: float | None, threshold: float) -> GateReading:
    outcome: Outcome = "inconclusive" if value is None else "pass" if value >= threshold else "fail"
    return GateReading(name, value, threshold, outcome, "min")


def _p99_ratio(
    candidate: VersionStats, baseline: VersionStats, threshold: float, *, mirrored: bool
) -> GateReading:
    """Candidate p99 over baseline p99 (bucket upper bounds); fails only when the candidate's bucket
    starts above ``threshold`` times the baseline's bound: certainly slower than allowed.
    Inconclusive until each side has :data:`P99_SAMPLES` latencies."""
    high = candidate.latency_quantile(0.99, mirrored=mirrored)
    base = baseline.latency_quantile(0.99)
    if high is None or base is None:
        return GateReading("p99_ratio", None, threshold, "inconclusive", "max")
    timed = sum(candidate.mirror_latency_counts if mirrored else candidate.latency_counts)
    baseline_timed = sum(baseline.latency_counts)
    if min(timed, baseline_timed) < P99_SAMPLES:
        note = f"a p99 needs {P99_SAMPLES} latencies each side: {timed} and {baseline_timed} so far"
        return GateReading("p99_ratio", high / base, threshold, "inconclusive", "max", note)
    low = _bucket_start(high)
    outcome: Outcome = "fail" if low > threshold * base else "pass"
    return GateReading("p99_ratio", high / base, threshold, outcome, "max")


def _bucket_start(upper: float) -> float:
    """The lower bound of the latency bucket whose upper bound is ``upper``."""
    below = [bound for bound in LATENCY_BUCKETS_MS if bound < upper]
    return below[-1] if below else 0.0


def _figures(candidate: VersionStats, baseline: VersionStats) -> dict[str, int]:
    return {
        "candidate_requests": candidate.requests,
        "candidate_errors": candidate.errors,
        "candidate_mirrored": candidate.mirrored,
        "candidate_mirror_errors": candidate.mirror_errors,
        "compared": candidate.compared,
        "agreed": candidate.agreed,
        "baseline_requests": baseline.requests,
        "baseline_errors": baseline.errors,
    }


def stats_to(stats: VersionStats) -> dict[str, Any]:
    """``stats`` as JSON data (for a snapshot in the database)."""
    return {
        field.name: list(value) if isinstance(value := getattr(stats, field.name), tuple) else value
        for field in dataclasses.fields(stats)
    }


def fell(delta: VersionStats) -> bool:
    """Whether any counter of a window went backwards (the analysis restarted empty)."""
    for field in dataclasses.fields(delta):
        value = getattr(delta, field.name)
        if any(item < 0 for item in value) if isinstance(value, tuple) else value < 0:
            return True
    return False


def stats_from(data: Any) -> VersionStats | None:
    """A snapshot read back; None when it does not fit today's :class:`VersionStats` (then the
    window starts again rather than diffing mismatched figures)."""
    if not isinstance(data, dict):
        return None
    empty = VersionStats()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(empty):
        value, default = data.get(field.name), getattr(empty, field.name)
        if isinstance(default, tuple):
            if not isinstance(value, list) or len(value) != len(default):
                return None
            values[field.name] = tuple(int(item) for item in value)
        elif isinstance(value, int) and not isinstance(value, bool):
            values[field.name] = value
        else:
            return None
    return VersionStats(**values)
