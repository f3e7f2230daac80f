"""The gates a candidate must pass, and how a comparison's figures are judged against them.

A :class:`Policy` is a set of thresholds, each optional (``None``: not checked), read from a YAML
file (:func:`load_policy`) or built in code::

    min_rows: 200            # fewer rows sent to both: every gate is inconclusive
    min_agreement: 0.98      # rows whose every output agrees (label, argmax or within tolerance)
    max_abs_diff: 1.0e-3     # the largest absolute difference of any numeric element
    max_error_rate: 0        # rows the candidate failed to answer
    max_accuracy_drop: 0.005 # with labels: accuracy may be at most this much lower (bootstrap CI)
    abs_tol: 1.0e-6          # when two numbers are the same answer
    rel_tol: 1.0e-5

:func:`evaluate` reads the dict :meth:`Comparison.summary() <modelyard.validation.compare.Comparison.summary>`
returns (with a ``labels`` entry when labels were scored) and gives one :class:`GateResult` per
gate set, each ``pass``, ``fail`` or ``inconclusive``; :func:`verdict` is ``pass`` only when every
gate passed, ``fail`` when any failed, ``inconclusive`` otherwise. A gate whose figure is missing
(no rows compared, no numeric output, no labels) is inconclusive: no data is never a pass. A gate
on a difference with a confidence interval passes when the whole interval is on the good side of
the margin, fails when it is all on the bad side, and is inconclusive when it straddles it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import InvalidInput
from modelyard.validation.compare import Kind, Tolerance

__all__ = [
    "MAX_POLICY_BYTES",
    "GateResult",
    "Outcome",
    "Policy",
    "evaluate",
    "load_policy",
    "parse_policy",
    "verdict",
]

MAX_POLICY_BYTES = 1 << 20


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Policy(BaseModel):
    """The gates (each None when not checked) and how answers are compared."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows: int = Field(1, ge=1, description="rows sent to both versions below which nothing is decided")
    min_agreement: float | None = Field(0.99, ge=0, le=1)
    max_abs_diff: float | None = Field(None, ge=0)
    max_rel_diff: float | None = Field(None, ge=0)
    max_error_rate: float | None = Field(0.0, ge=0, le=1, description="the candidate's failed rows")
    max_nonfinite: int | None = Field(
        None, ge=0, description="NaN/Inf values the candidate returned beyond the baseline's"
    )
    max_accuracy_drop: float | None = Field(None, ge=0, description="labels: accuracy margin")
    max_rmse_increase: float | None = Field(None, ge=0, description="labels: RMSE margin")
    max_latency_ratio: float | None = Field(None, gt=0, description="candidate ms per row / baseline's")
    abs_tol: float = Field(1e-6, ge=0)
    rel_tol: float = Field(1e-5, ge=0)
    outputs: dict[str, Kind] = Field(default_factory=dict, description="how to compare named outputs")
    confidence: float = Field(0.95, gt=0, lt=1, description="of the bootstrap interval")
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 0

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(abs_tol=self.abs_tol, rel_tol=self.rel_tol)

    def evaluate(self, summary: Mapping[str, Any]) -> list[GateResult]:
        return evaluate(self, summary)


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate's outcome: the figure it read, the threshold, and why, in words."""

    gate: str
    outcome: Outcome
    value: float | None
    threshold: float
    reason: str
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "gate": self.gate,
            "outcome": self.outcome.value,
            "value": self.value,
            "threshold": self.threshold,
            "reason": self.reason,
        }
        if self.interval is not None:
            result["interval"] = list(self.interval)
        return result


def verdict(gates: list[GateResult]) -> Outcome:
    """``pass`` only when every gate passed (and there was one); ``fail`` when any failed."""
    outcomes = {gate.outcome for gate in gates}
    if Outcome.FAIL in outcomes:
        return Outcome.FAIL
    if not gates or Outcome.INCONCLUSIVE in outcomes:
        return Outcome.INCONCLUSIVE
    return Outcome.PASS


def evaluate(policy: Policy, summary: Mapping[str, Any]) -> list[GateResult]:
    """Every gate ``policy`` sets, judged on ``summary`` (see the module doc)."""
    rows = int(summary.get("rows") or 0)
    results = [_enough_rows(rows, policy.min_rows)]
    for name, check in _GATES:
        threshold = getattr(policy, name)
        if threshold is not None:
            results.append(check(name, float(threshold), summary))
    if rows < policy.min_rows:
        # Too few rows to decide anything: figures are shown, outcomes are not.
        note = f"only {rows} rows, the policy needs {policy.min_rows}"
        results = [results[0]] + [
            dataclasses.replace(r, outcome=Outcome.INCONCLUSIVE, reason=f"{r.reason}; {note}")
            for r in results[1:]
        ]
    return results


def _enough_rows(rows: int, needed: int) -> GateResult:
    """Too few rows is not evidence against the candidate, only no evidence: inconclusive, never fail
    (a rollout holds and waits for more, a validation asks for a bigger dataset)."""
    if rows >= needed:
        return GateResult("min_rows", Outcome.PASS, float(rows), float(needed), f"{rows} >= {needed}")
    return GateResult("min_rows", Outcome.INCONCLUSIVE, float(rows), float(needed), f"{rows} < {needed}")


def _agreement(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    return _at_least(name, summary.get("agreement"), threshold, "agreement (no row was compared)")


def _abs_diff(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    return _at_most(name, summary.get("max_abs_diff"), threshold, "difference (no numeric output)")


def _rel_diff(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    return _at_most(name, summary.get("max_rel_diff"), threshold, "difference (no numeric output)")


def _error_rate(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    rate = (summary.get("error_rate") or {}).get("candidate")
    return _at_most(name, rate, threshold, "error rate (no row was sent)")


def _nonfinite(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    counts = summary.get("nonfinite") or {}
    if not summary.get("compared") or "candidate" not in counts:
        return _at_most(name, None, threshold, "NaN/Inf count (no row was compared)")
    extra = max(0, int(counts["candidate"]) - int(counts.get("baseline", 0)))
    return _at_most(name, float(extra), threshold, "NaN/Inf count")


def _latency(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    latency = summary.get("latency") or {}
    base = (latency.get("baseline") or {}).get("ms_per_row")
    cand = (latency.get("candidate") or {}).get("ms_per_row")
    ratio = cand / base if base and cand is not None else None
    return _at_most(name, ratio, threshold, "latency ratio (no timed call)")


def _accuracy(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    return _margin(name, threshold, summary, metric="accuracy", higher_is_better=True)


def _rmse(name: str, threshold: float, summary: Mapping[str, Any]) -> GateResult:
    return _margin(name, threshold, summary, metric="rmse", higher_is_better=False)


def _margin(
    name: str, threshold: float, summary: Mapping[str, Any], *, metric: str, higher_is_better: bool
) -> GateResult:
    """A non-inferiority gate on ``candidate - baseline`` of a labelled metric, read off its CI."""
    labels = summary.get("labels") or {}
    if labels.get("metric") != metric or labels.get("ci") is None:
        why = "no labels" if not labels else f"labels were scored as {labels.get('metric')}, not {metric}"
        return GateResult(name, Outcome.INCONCLUSIVE, None, threshold, why)
    low, high = (float(x) for x in labels["ci"])
    difference = float(labels["difference"])
    level = f"{float(labels.get('confidence', 0.95)):.0%}"
    if higher_is_better:  # the difference may go down to -threshold
        good, bad = low >= -threshold, high < -threshold
    else:  # the difference may go up to +threshold
        good, bad = high <= threshold, low > threshold
    outcome = Outcome.PASS if good else Outcome.FAIL if bad else Outcome.INCONCLUSIVE
    where = {Outcome.PASS: "within", Outcome.FAIL: "beyond", Outcome.INCONCLUSIVE: "straddles"}[outcome]
    reason = (
        f"{metric} difference {difference:+.4g}, {level} CI [{low:+.4g}, {high:+.4g}] "
        f"{where} the margin {threshold:.4g}"
    )
    return GateResult(name, outcome, difference, threshold, reason, (low, high))


def _at_least(name: str, value: Any, threshold: float, what: str) -> GateResult:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return GateResult(name, Outcome.INCONCLUSIVE, None, threshold, f"no {what}")
    value = float(value)
    ok = value >= threshold
    reason = f"{value:.6g} {'>=' if ok else '<'} {threshold:.6g}"
    return GateResult(name, Outcome.PASS if ok else Outcome.FAIL, value, threshold, reason)


def _at_most(name: str, value: Any, threshold: float, what: str) -> GateResult:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return GateResult(name, Outcome.INCONCLUSIVE, None, threshold, f"no {what}")
    value = float(value)
    ok = value <= threshold
    reason = f"{value:.6g} {'<=' if ok else '>'} {threshold:.6g}"
    return GateResult(name, Outcome.PASS if ok else Outcome.FAIL, value, threshold, reason)


_GATES: tuple[tuple[str, Callable[[str, float, Mapping[str, Any]], GateResult]], ...] = (
    ("min_agreement", _agreement),
    ("max_abs_diff", _abs_diff),
    ("max_rel_diff", _rel_diff),
    ("max_error_rate", _error_rate),
    ("max_nonfinite", _nonfinite),
    ("max_accuracy_drop", _accuracy),
    ("max_rmse_increase", _rmse),
    ("max_latency_ratio", _latency),
)


def parse_policy(data: object, source: str = "policy") -> Policy:
    """A :class:`Policy` from already-parsed YAML/JSON (a mapping; None or empty: the defaults)."""
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{source}: a policy is a mapping of gates", field=source)
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or source
        raise InvalidInput(f"{source}: {field}: {first['msg']}", field=field) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read a policy YAML file; a bad file is an :class:`InvalidInput` naming the field."""
    import yaml

    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read the policy {source}: {exc.strerror}", field="policy") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise InvalidInput(f"{source}: a policy file is at most {MAX_POLICY_BYTES} bytes", field="policy")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {exc}", field="policy") from None
    return parse_policy(data, source)
