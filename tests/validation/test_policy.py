"""The gates: three outcomes each, no data never a pass, intervals against margins, YAML files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.validation.compare import Comparison
from modelyard.validation.policy import Outcome, Policy, evaluate, load_policy, parse_policy, verdict


def _summary(agreeing: int, disagreeing: int, errors: int = 0) -> dict[str, object]:
    comparison = Comparison()
    labels = np.arange(agreeing + disagreeing)
    comparison.update({"label": labels}, {"label": np.where(labels < agreeing, labels, -1)})
    comparison.add_errors(errors, candidate=True)
    return comparison.summary()


def _outcomes(policy: Policy, summary: dict[str, object]) -> dict[str, str]:
    return {gate.gate: gate.outcome.value for gate in evaluate(policy, summary)}


def test_default_policy_passes_identical_answers() -> None:
    gates = evaluate(Policy(), _summary(100, 0))
    assert _outcomes(Policy(), _summary(100, 0)) == {
        "min_rows": "pass", "min_agreement": "pass", "max_error_rate": "pass",
    }  # fmt: skip
    assert verdict(gates) is Outcome.PASS


def test_agreement_below_the_gate_fails() -> None:
    gates = evaluate(Policy(min_agreement=0.98), _summary(97, 3))
    assert verdict(gates) is Outcome.FAIL
    failed = next(g for g in gates if g.gate == "min_agreement")
    assert (failed.outcome, failed.value, failed.reason) == (Outcome.FAIL, 0.97, "0.97 < 0.98")


def test_errors_fail_the_error_gate() -> None:
    policy = Policy(max_error_rate=0.01)
    assert _outcomes(policy, _summary(98, 0, errors=2))["max_error_rate"] == "fail"
    assert _outcomes(policy, _summary(990, 0, errors=10))["max_error_rate"] == "pass"


def test_no_data_is_never_a_pass() -> None:
    empty = Comparison().summary()
    gates = evaluate(Policy(max_abs_diff=1e-3), empty)
    assert {g.gate: g.outcome for g in gates} == {
        "min_rows": Outcome.INCONCLUSIVE, "min_agreement": Outcome.INCONCLUSIVE,
        "max_abs_diff": Outcome.INCONCLUSIVE, "max_error_rate": Outcome.INCONCLUSIVE,
    }  # fmt: skip
    assert verdict(gates) is Outcome.INCONCLUSIVE
    assert verdict([]) is Outcome.INCONCLUSIVE


def test_too_few_rows_makes_every_gate_inconclusive() -> None:
    gates = evaluate(Policy(min_rows=200, min_agreement=0.98), _summary(50, 50))
    by_gate = {g.gate: g for g in gates}
    assert by_gate["min_rows"].outcome is Outcome.INCONCLUSIVE  # no evidence is not evidence against
    assert by_gate["min_agreement"].outcome is Outcome.INCONCLUSIVE  # 0.5 < 0.98, but only 100 rows
    assert by_gate["min_agreement"].value == 0.5
    assert "only 100 rows, the policy needs 200" in by_gate["min_agreement"].reason


def test_an_accuracy_gate_without_labels_is_inconclusive() -> None:
    gates = evaluate(Policy(max_accuracy_drop=0.01), _summary(100, 0))
    gate = next(g for g in gates if g.gate == "max_accuracy_drop")
    assert (gate.outcome, gate.reason) == (Outcome.INCONCLUSIVE, "no labels")
    assert verdict(gates) is Outcome.INCONCLUSIVE


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [((-0.004, 0.01), "pass"), ((-0.03, -0.011), "fail"), ((-0.02, 0.0), "inconclusive")],
)
def test_the_accuracy_gate_reads_the_whole_interval(ci: tuple[float, float], outcome: str) -> None:
    summary = _summary(100, 0) | {
        "labels": {"metric": "accuracy", "difference": sum(ci) / 2, "ci": list(ci), "confidence": 0.95}
    }
    gate = evaluate(Policy(max_accuracy_drop=0.01), summary)[-1]
    assert (gate.gate, gate.outcome.value, gate.interval) == ("max_accuracy_drop", outcome, ci)


@pytest.mark.parametrize(
    ("ci", "outcome"), [((-0.1, 0.05), "pass"), ((0.2, 0.3), "fail"), ((0.0, 0.2), "inconclusive")]
)
def test_the_rmse_gate_reads_the_whole_interval(ci: tuple[float, float], outcome: str) -> None:
    summary = _summary(100, 0) | {"labels": {"metric": "rmse", "difference": 0.0, "ci": list(ci)}}
    assert _outcomes(Policy(max_rmse_increase=0.1), summary)["max_rmse_increase"] == outcome
    assert _outcomes(Policy(max_accuracy_drop=0.1), summary)["max_accuracy_drop"] == "inconclusive"


def test_nonfinite_and_latency_gates() -> None:
    comparison = Comparison()
    comparison.update({"y": np.array([1.0, np.nan])}, {"y": np.array([np.inf, np.nan])})
    comparison.add_latency("baseline", 0.01, rows=2)
    comparison.add_latency("candidate", 0.03, rows=2)
    outcomes = _outcomes(Policy(max_nonfinite=0, max_latency_ratio=2.0), comparison.summary())
    assert outcomes["max_nonfinite"] == "fail"  # one Inf beyond the baseline's one NaN
    assert outcomes["max_latency_ratio"] == "fail"  # 3x
    assert _outcomes(Policy(max_latency_ratio=2.0), Comparison().summary())["max_latency_ratio"] == (
        "inconclusive"
    )


def test_policies_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "min_agreement: 0.98\nmax_abs_diff: 1.0e-3\nmax_accuracy_drop: 0.005\noutputs: {y: numeric}\n"
    )
    policy = load_policy(path)
    assert (policy.min_agreement, policy.max_abs_diff, policy.max_accuracy_drop) == (0.98, 1e-3, 0.005)
    assert policy.outputs == {"y": "numeric"}
    assert policy.max_error_rate == 0.0  # defaults stay
    (tmp_path / "empty.yaml").write_text("")
    assert load_policy(tmp_path / "empty.yaml") == Policy()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("min_agreement: 1.5\n", "min_agreement"),
        ("min_agrement: 0.9\n", "min_agrement"),
        ("outputs: {y: fuzzy}\n", "outputs.y"),
        ("- 1\n", "policy.yaml"),
        ("min_agreement: [\n", "policy"),
    ],
)
def test_a_bad_policy_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_policy(path)
    assert caught.value.field is not None
    assert caught.value.field.endswith(field)


def test_a_missing_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read the policy"):
        load_policy(tmp_path / "nope.yaml")
    assert parse_policy(None) == Policy()


def test_the_documented_defaults_are_the_policys() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "validation.md").read_text()
    stated = dict(re.findall(r"^\| `(\w+)`(?:, `\w+`)? \| .* \| ([0-9.]+|off) \|$", page, flags=re.MULTILINE))
    defaults = Policy()
    assert set(stated) == {
        "min_rows", "min_agreement", "max_abs_diff", "max_error_rate", "max_nonfinite",
        "max_accuracy_drop", "max_rmse_increase", "max_latency_ratio",
    }  # fmt: skip
    for gate, value in stated.items():
        assert getattr(defaults, gate) == (None if value == "off" else float(value)), gate
    for knob, value in {
        "abs_tol": 1e-6,
        "rel_tol": 1e-5,
        "confidence": 0.95,
        "resamples": 1000,
        "seed": 0,
    }.items():
        assert getattr(defaults, knob) == value, knob
        assert f"`{knob}` ({value:g})".replace("e-0", "e-") in page, knob
