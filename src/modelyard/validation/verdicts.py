"""A validation report as the verdict recorded on the candidate's registry version: what
``modelyard validate`` records, and what a validation job records, written once."""

from __future__ import annotations

from modelyard.registry.types import NewValidation, ValidationGate
from modelyard.validation.offline import Report, jsonable

__all__ = ["verdict_of"]


def verdict_of(report: Report, *, user: str, dataset: str) -> NewValidation:
    """The verdict of ``report``: outcome, baseline (as given, and what it resolved to), the
    dataset (as ``dataset`` names it), each gate and the headline figures."""
    summary = report.summary
    figures = jsonable(
        {
            "agreement": summary["agreement"], "rows": summary["rows"], "compared": summary["compared"],
            "errors": summary["errors"], "max_abs_diff": summary["max_abs_diff"],
            "max_rel_diff": summary["max_rel_diff"], "labels": summary.get("labels"),
            "rows_per_s": report.rows_per_s,
        }
    )  # fmt: skip
    gates = [
        ValidationGate(
            gate=g.gate,
            outcome=g.outcome.value,
            value=g.value if g.value is not None and abs(g.value) != float("inf") else None,
            threshold=g.threshold,
            reason=g.reason[:500],
        )
        for g in report.gates
    ]
    return NewValidation(
        outcome=report.outcome.value,
        baseline=f"{report.baseline.given} ({report.baseline.resolved})"[:500],
        baseline_sha256=report.baseline.sha256,
        dataset=dataset[:500],
        dataset_sha256=report.dataset.sha256,
        rows=summary["rows"],
        policy=report.policy.model_dump(mode="json"),
        gates=gates,
        figures=figures,
        user=user[:200],
    )
