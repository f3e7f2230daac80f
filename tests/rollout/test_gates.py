"""A step's gates: three outcomes, and no data is never a pass."""

from __future__ import annotations

from modelyard.deploy.spec import RolloutGates, RolloutStep
from modelyard.rollout.gates import read_step, stats_from, stats_to
from modelyard.validation.evidence import VersionStats
from tests.rollout.support import FakeEvidence

GATES = RolloutGates(min_requests=10, max_error_rate=0.05, max_p99_ratio=1.5, min_agreement=0.9)
WEIGHT = RolloutStep.model_validate({"weight": 5, "for": "1s"})
MIRROR = RolloutStep.model_validate({"mirror": 1.0, "for": "1s"})


def _stats(**figures: int | float) -> tuple[VersionStats, VersionStats]:
    evidence = FakeEvidence()
    evidence.add("v2", **figures)  # type: ignore[arg-type]
    evidence.add("v1", requests=100, latency_ms=10)
    return evidence.versions["v2"], evidence.versions["v1"]


def test_no_data_is_inconclusive_never_a_pass() -> None:
    reading = read_step(WEIGHT, GATES, VersionStats(), VersionStats())
    assert reading.outcome == "inconclusive"
    outcomes = {g.name: g.outcome for g in reading.gates}
    assert outcomes == {"error_rate": "inconclusive", "p99_ratio": "inconclusive"}
    assert reading.missing() == "too few requests: 0 seen, 10 needed (min_requests)"


def test_a_failing_gate_below_min_requests_is_not_yet_a_failure() -> None:
    reading = read_step(WEIGHT, GATES, *_stats(requests=5, errors=5, latency_ms=10))
    assert reading.outcome == "inconclusive"


def test_a_weight_step_reads_primary_answers_and_agreement_only_if_compared() -> None:
    reading = read_step(WEIGHT, GATES, *_stats(requests=20, errors=2, latency_ms=10))
    assert {g.name: (g.value, g.outcome) for g in reading.gates} == {
        "error_rate": (0.1, "fail"),
        "p99_ratio": (1.0, "pass"),
    }
    assert reading.outcome == "fail"


def test_a_mirror_step_counts_compared_answers_and_needs_agreement() -> None:
    reading = read_step(MIRROR, GATES, *_stats(mirrored=20, compared=20, agreed=19, latency_ms=10))
    assert (reading.count, reading.outcome) == (20, "pass")
    assert next(g for g in reading.gates if g.name == "agreement").value == 0.95
    missing = read_step(MIRROR, GATES, *_stats(mirrored=20, latency_ms=10))
    assert (missing.count, missing.outcome) == (0, "inconclusive")


def test_the_mirror_error_rate_is_that_of_the_mirrored_copies() -> None:
    reading = read_step(MIRROR, GATES, *_stats(requests=0, mirrored=20, mirror_errors=4, compared=20))
    assert next(g for g in reading.gates if g.name == "error_rate").value == 0.2


def test_snapshots_round_trip_and_refuse_what_does_not_fit() -> None:
    stats, _ = _stats(requests=3, mirrored=2, compared=1)
    assert stats_from(stats_to(stats)) == stats
    assert stats_from({"requests": 1}) is None
    assert stats_from(None) is None
