"""Each route compared under its own policy (what a rollout's ``compare`` block sets): the same
answers judged by each route's tolerances, and a route's pairs dropped when its comparison changes,
so that no figure counts answers compared two ways."""

from __future__ import annotations

import pytest

from modelyard.errors import InvalidInput
from modelyard.validation.evidence import ComparePolicy
from modelyard.validation.online import OnlineAnalysis
from modelyard.validation.policy import Policy
from tests.validation.online_support import line, oip_body

LOOSE = ComparePolicy(abs_tol=1e-4, rel_tol=1e-3, min_agreement=0.98)


def _near_pairs(model: str, count: int = 20, start: int = 0) -> list[bytes]:
    """v1 answers and v2's mirrored answers ``1e-4`` apart (a float16 retrain of a float32 model):
    one number an answer, compared as numbers."""
    lines = []
    for i in range(start, start + count):
        value = 0.25 + i % 5
        lines.append(line(f"r{i}", "v1", body=oip_body([value], "1"), model=model))
        lines.append(line(f"r{i}", "v2", "mirror", body=oip_body([value + 1e-4], "2"), model=model))
    return lines


def _pair(analysis: OnlineAnalysis, model: str) -> dict[str, object]:
    (found,) = analysis.pairs("p", model)
    return found


def _agreed(analysis: OnlineAnalysis, model: str) -> tuple[int, int]:
    stats = analysis.stats("p", model, baseline="v1")["v2"]
    return stats.compared, stats.agreed


def test_two_routes_judge_the_same_answers_by_their_own_tolerances() -> None:
    analysis = OnlineAnalysis()
    analysis.compare_with("p", "loose", LOOSE)
    analysis.feed(_near_pairs("strict") + _near_pairs("loose"))
    assert _agreed(analysis, "strict") == (20, 0)  # the default: 1e-6 + 1e-5 |b|
    assert _agreed(analysis, "loose") == (20, 20)
    strict, loose = _pair(analysis, "strict"), _pair(analysis, "loose")
    assert (strict["verdict"], loose["verdict"]) == ("fail", "pass")
    gates = {gate["gate"]: gate for gate in loose["gates"]}  # type: ignore[attr-defined]
    assert gates["min_agreement"]["threshold"] == 0.98  # the route's gate, not the default 0.99
    # The Prometheus view counts the same pairs.
    _, figures = analysis.snapshot()
    assert {(f.model, f.compared, f.agreed) for f in figures} == {("strict", 20, 0), ("loose", 20, 20)}


def test_output_kinds_are_the_routes_own() -> None:
    analysis = OnlineAnalysis()
    analysis.compare_with("p", "values", ComparePolicy(abs_tol=1e-6, rel_tol=1e-5, outputs={"y": "numeric"}))
    lines = []
    for model in ("guessed", "values"):
        lines.append(line("a", "v1", body=oip_body([0.1, 0.7, 0.2]), model=model))
        lines.append(line("a", "v2", "mirror", body=oip_body([0.2, 0.5, 0.3]), model=model))  # same class
    analysis.feed(lines)
    assert _agreed(analysis, "guessed") == (1, 1)  # three floats: scores, by their argmax
    assert _agreed(analysis, "values") == (1, 0)  # the route compares them as numbers


def test_a_changed_comparison_drops_the_routes_pairs_and_only_those() -> None:
    analysis = OnlineAnalysis()
    analysis.feed(_near_pairs("m") + _near_pairs("other"))
    assert _agreed(analysis, "m") == (20, 0)
    analysis.compare_with("p", "m", LOOSE)
    assert analysis.pairs("p", "m") == []  # compared under the default: gone
    assert _agreed(analysis, "m") == (0, 0)
    assert analysis.stats("p", "m")["v2"].mirrored == 20  # what is not a comparison stays
    assert _agreed(analysis, "other") == (20, 0)  # another route keeps its own
    analysis.feed(_near_pairs("m", start=20))
    assert _agreed(analysis, "m") == (20, 20)
    _, figures = analysis.snapshot()
    assert {(f.model, f.compared) for f in figures} == {("m", 20), ("other", 20)}


def test_the_same_policy_again_keeps_the_pairs_and_new_gates_alone_too() -> None:
    analysis = OnlineAnalysis()
    analysis.compare_with("p", "m", LOOSE)
    analysis.feed(_near_pairs("m"))
    analysis.compare_with("p", "m", LOOSE)  # every tick of a rollout does this
    assert _agreed(analysis, "m") == (20, 20)
    # Gates are judged when read: a new threshold keeps the counts and judges them anew.
    analysis.compare_with("p", "m", ComparePolicy(abs_tol=1e-4, rel_tol=1e-3, min_agreement=None))
    assert _agreed(analysis, "m") == (20, 20)
    gates = {gate["gate"] for gate in _pair(analysis, "m")["gates"]}  # type: ignore[attr-defined]
    assert "min_agreement" not in gates
    # A full Policy is accepted too; back to the default comparison drops the pairs.
    analysis.compare_with("p", "m", Policy())
    assert analysis.pairs("p", "m") == []


def test_the_routes_policy_builds_on_the_analysiss_own() -> None:
    analysis = OnlineAnalysis(policy=Policy(max_error_rate=0.5, min_agreement=0.5))
    analysis.compare_with("p", "m", LOOSE)
    analysis.feed(_near_pairs("m"))
    gates = {gate["gate"]: gate["threshold"] for gate in _pair(analysis, "m")["gates"]}  # type: ignore[attr-defined]
    assert (gates["max_error_rate"], gates["min_agreement"]) == (0.5, 0.98)


def test_a_bad_output_kind_is_refused_naming_it() -> None:
    analysis = OnlineAnalysis()
    with pytest.raises(InvalidInput) as refused:
        analysis.compare_with("p", "m", ComparePolicy(abs_tol=0, rel_tol=0, outputs={"y": "labels"}))
    assert refused.value.field == "outputs.y"
    analysis.feed(_near_pairs("m"))
    assert _agreed(analysis, "m") == (20, 0)  # still the default comparison
