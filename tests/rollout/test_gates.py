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
    reading = read_step(WEIGHT, GATES, *_stats(requests=100, errors=10, latency_ms=10))
    assert {g.name: (g.value, g.outcome) for g in reading.gates} == {
        "error_rate": (0.1, "fail"),
        "p99_ratio": (1.0, "pass"),
    }
    assert reading.outcome == "fail"


def test_a_mirror_step_counts_compared_answers_and_needs_agreement() -> None:
    reading = read_step(MIRROR, GATES, *_stats(mirrored=100, compared=100, agreed=95, latency_ms=10))
    assert (reading.count, reading.outcome) == (100, "pass")
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


def test_a_p99_of_fewer_than_100_latencies_on_either_side_is_inconclusive() -> None:
    # Of 99 latencies the p99 is the largest: one slow request would decide the gate.
    few = read_step(WEIGHT, GATES, *_stats(requests=99, latency_ms=30))
    [gate] = [g for g in few.gates if g.name == "p99_ratio"]
    assert (gate.value, gate.outcome) == (3.0, "inconclusive")
    assert gate.note == "a p99 needs 100 latencies each side: 99 and 100 so far"
    assert "p99_ratio 3 (needs <= 1.5): inconclusive (a p99 needs 100" in few.missing()
    enough = read_step(WEIGHT, GATES, *_stats(requests=100, latency_ms=30))
    assert [g.outcome for g in enough.gates if g.name == "p99_ratio"] == ["fail"]
    candidate, _ = _stats(requests=100, latency_ms=30)
    thin_baseline = read_step(WEIGHT, GATES, candidate, _stats(requests=99, latency_ms=10)[0])
    assert [g.outcome for g in thin_baseline.gates if g.name == "p99_ratio"] == ["inconclusive"]


def test_a_p99_failure_counts_only_at_the_steps_end_errors_at_once() -> None:
    slow = read_step(WEIGHT, GATES, *_stats(requests=100, latency_ms=30))
    assert slow.outcome == "fail"
    assert slow.failures(ended=False) == ""
    assert slow.failures(ended=True).startswith("p99_ratio 3 (needs <= 1.5): fail")
    failing = read_step(WEIGHT, GATES, *_stats(requests=100, errors=10, latency_ms=30))
    assert failing.failures(ended=False) == "error_rate 0.1 (needs <= 0.05): fail"
    below = read_step(WEIGHT, GATES, *_stats(requests=5, errors=5, latency_ms=10))
    assert below.failures(ended=True) == ""  # below min_requests nothing fails
