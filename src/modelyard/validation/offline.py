"""Offline validation: both versions run in-process on the same rows, in large batches, compared.

Each version is a :class:`~modelyard.server.runtime.ModelRuntime`, the model server's own: its
hooks (load, preprocess, the batched predict, postprocess) run as they do when served, and what
it returns is normalised as the server does. The versions run one after the other on each batch,
so each one's latency is its own. A batch a version fails is split in halves until the rows it
fails on are alone: a bad row costs itself, not its batch-mates. Then the rows both answered are
compared (:class:`~modelyard.validation.compare.Comparison`), scored against the labels when there
are labels (:class:`~modelyard.validation.scores.LabelScores`), and gated by the policy.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.sdk import ModelSpec
from modelyard.server.runtime import ModelRuntime, RuntimeOptions
from modelyard.server.validation import normalize_outputs
from modelyard.validation.compare import Comparison, Side, output_kind
from modelyard.validation.data import Dataset
from modelyard.validation.policy import GateResult, Outcome, Policy, evaluate, verdict
from modelyard.validation.scores import LabelScores

__all__ = ["DEFAULT_BATCH_SIZE", "Report", "Subject", "run_validation"]

DEFAULT_BATCH_SIZE = 1024
WORST_SHOWN = 10  # worst rows re-run at the end, to show their inputs and both answers
_CELLS = 16  # values of one input or output shown per row


@dataclasses.dataclass(frozen=True)
class Subject:
    """One side of the comparison: what the user named, what it resolved to, and the model."""

    given: str  # as on the command line: spam@staging, model.onnx
    resolved: str  # spam/7, or the file's path
    spec: ModelSpec
    sha256: str | None = None  # of the artifact, when known
    registry: tuple[str, int] | None = None  # (model, version) when a registry version

    def describe(self) -> dict[str, Any]:
        return {"given": self.given, "resolved": self.resolved, "sha256": self.sha256}


@dataclasses.dataclass
class Report:
    """Everything a validation found: the figures, each gate, the verdict, and where it came from."""

    candidate: Subject
    baseline: Subject
    dataset: Dataset
    policy: Policy
    summary: dict[str, Any]
    gates: list[GateResult]
    outcome: Outcome
    seconds: float
    errors: dict[str, dict[str, int]]  # side -> error message -> rows
    examples: list[dict[str, Any]]  # the worst rows: inputs and both versions' answers
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def rows_per_s(self) -> float | None:
        return self.summary["rows"] / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers as the strings ``inf``, ``-inf``, ``nan``)."""
        figures: dict[str, Any] = jsonable(
            {
                "outcome": self.outcome.value,
                "candidate": self.candidate.describe(),
                "baseline": self.baseline.describe(),
                "dataset": {"path": self.dataset.path, "format": self.dataset.format,
                            "rows": self.dataset.rows, "sha256": self.dataset.sha256},
                "policy": self.policy.model_dump(mode="json"),
                "gates": [gate.to_dict() for gate in self.gates],
                "summary": self.summary,
                "errors": self.errors,
                "examples": self.examples,
                "seconds": self.seconds,
                "rows_per_s": self.rows_per_s,
                "warnings": self.warnings,
            }
        )  # fmt: skip
        return figures


@dataclasses.dataclass
class _Segment:
    """Rows ``lo:hi`` of a batch, and what a version answered for them (or why it failed)."""

    lo: int
    hi: int
    outputs: dict[str, np.ndarray] | None
    error: str = ""


class _Version:
    """A loaded version and the figures of its calls."""

    def __init__(self, side: Side, subject: Subject, comparison: Comparison) -> None:
        self.side: Side = side
        self.runtime = ModelRuntime(subject.spec, RuntimeOptions(max_queue=8, workers=2, timeout_s=None))
        self.comparison = comparison
        self.errors: Counter[str] = Counter()

    async def answer(
        self, inputs: dict[str, np.ndarray], lo: int, hi: int, *, count: bool = True
    ) -> list[_Segment]:
        """Run rows ``lo:hi``; a failing call is split until the failing rows are alone. With
        ``count``, its latency and errors go into the figures."""
        rows = {name: array[lo:hi] for name, array in inputs.items()}
        started = time.perf_counter()
        try:
            raw = await self.runtime.infer(rows)
            outputs = normalize_outputs(self.runtime.metadata, raw)
            _check_rows(outputs, hi - lo)
        except (ModelyardError, ValueError, TypeError) as exc:
            if hi - lo > 1:
                middle = (lo + hi) // 2
                first = await self.answer(inputs, lo, middle, count=count)
                return [*first, *await self.answer(inputs, middle, hi, count=count)]
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            if count:
                self.errors[message[:200]] += 1
            return [_Segment(lo, hi, None, message)]
        if count:
            self.comparison.add_latency(self.side, time.perf_counter() - started, hi - lo)
        return [_Segment(lo, hi, outputs)]


async def run_validation(
    candidate: Subject,
    baseline: Subject,
    dataset: Dataset,
    policy: Policy,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    labels_output: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Load both versions, run every row of ``dataset`` through each, compare, gate; then unload.

    ``progress`` is called with the rows of each batch once compared, and with 0 after each
    version has loaded: an exception it raises ends the run there."""
    comparison = Comparison(policy.tolerance, kinds=policy.outputs)
    base, cand = _Version("baseline", baseline, comparison), _Version("candidate", candidate, comparison)
    try:
        for version in (base, cand):
            await version.runtime.load()
            if progress is not None:
                progress(0)
        started = time.perf_counter()  # rows/s counts the runs, not the loads
        base_inputs = dataset.inputs_for(base.runtime.metadata)
        cand_inputs = dataset.inputs_for(cand.runtime.metadata)
        scores = await _run_rows(
            dataset, (base, base_inputs), (cand, cand_inputs), batch_size, labels_output, progress
        )
        seconds = time.perf_counter() - started
        examples = await _examples(comparison, base, cand, base_inputs, cand_inputs)
    finally:
        await cand.runtime.unload()
        await base.runtime.unload()
    summary = _summary(comparison, dataset, policy, scores, labels_output)
    gates = evaluate(policy, summary)
    errors: dict[str, dict[str, int]] = {v.side: dict(v.errors.most_common(5)) for v in (base, cand)}
    return Report(
        candidate, baseline, dataset, policy, summary, gates, verdict(gates), seconds, errors, examples
    )


async def _run_rows(
    dataset: Dataset,
    base: tuple[_Version, dict[str, np.ndarray]],
    cand: tuple[_Version, dict[str, np.ndarray]],
    batch_size: int,
    labels_output: str | None,
    progress: Callable[[int], None] | None,
) -> LabelScores | None:
    """Every row through each version (with its inputs), batch by batch, compared as it comes."""
    scores: LabelScores | None = None
    for start in range(0, dataset.rows, batch_size):
        end = min(start + batch_size, dataset.rows)
        b = await base[0].answer(base[1], start, end)
        c = await cand[0].answer(cand[1], start, end)
        scores = _compare(base[0].comparison, dataset, b, c, scores, labels_output)
        if progress is not None:
            progress(end - start)
    return scores


def _summary(
    comparison: Comparison,
    dataset: Dataset,
    policy: Policy,
    scores: LabelScores | None,
    labels_output: str | None,
) -> dict[str, Any]:
    """The comparison's figures, and with labels each version's score and the difference's interval."""
    summary = comparison.summary()
    if dataset.labels is not None:
        summary["labels"] = (scores or LabelScores(labels_output or "")).summary(
            policy.confidence, policy.resamples, policy.seed
        )
    return summary


def _compare(
    comparison: Comparison,
    dataset: Dataset,
    baseline: list[_Segment],
    candidate: list[_Segment],
    scores: LabelScores | None,
    labels_output: str | None,
) -> LabelScores | None:
    """Walk both versions' segments of one batch together: compare what both answered, count the rest."""
    i = j = 0
    position = baseline[0].lo
    while i < len(baseline) and j < len(candidate):
        b, c = baseline[i], candidate[j]
        end = min(b.hi, c.hi)
        if b.outputs is not None and c.outputs is not None:
            b_rows = {name: array[position - b.lo : end - b.lo] for name, array in b.outputs.items()}
            c_rows = {name: array[position - c.lo : end - c.lo] for name, array in c.outputs.items()}
            comparison.update(b_rows, c_rows, keys=range(position, end))
            if dataset.labels is not None:
                scores = scores or LabelScores(_scored_output(b_rows, labels_output))
                if scores.output in b_rows and scores.output in c_rows:
                    labels = dataset.labels[position:end]
                    scores.update(labels, b_rows[scores.output], c_rows[scores.output])
        else:
            comparison.add_errors(end - position, baseline=b.outputs is None, candidate=c.outputs is None)
        position = end
        i, j = i + (b.hi == end), j + (c.hi == end)
    return scores


def _scored_output(outputs: dict[str, np.ndarray], wanted: str | None) -> str:
    """The output labels are scored against: the one asked for, else the first label-like output
    (a classifier's predicted class), else the first output."""
    if wanted is not None:
        if wanted not in outputs:
            raise InvalidInput(
                f"the baseline has no output '{wanted}' (it has {sorted(outputs)})", field="output"
            )
        return wanted
    labels = [name for name, array in outputs.items() if output_kind(array) == "label"]
    return labels[0] if labels else next(iter(outputs))


async def _examples(
    comparison: Comparison,
    base: _Version,
    cand: _Version,
    base_inputs: dict[str, np.ndarray],
    cand_inputs: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The worst rows again, one at a time: their inputs and what each version answered."""
    examples = []
    for worst in comparison.worst_rows()[:WORST_SHOWN]:
        row = int(worst.key)
        answers: dict[str, Any] = {}
        for version, inputs in ((base, base_inputs), (cand, cand_inputs)):
            segment = (await version.answer(inputs, row, row + 1, count=False))[0]
            answers[version.side] = (
                {name: _cells(array[0]) for name, array in segment.outputs.items()}
                if segment.outputs is not None
                else {"error": segment.error}
            )
        examples.append(
            {
                "row": row,
                "disagreed": worst.disagreed,
                "max_abs_diff": worst.max_abs_diff,
                "outputs": list(worst.outputs),
                "inputs": {name: _cells(array[row]) for name, array in base_inputs.items()},
                **answers,
            }
        )
    return examples


def _check_rows(outputs: dict[str, np.ndarray], rows: int) -> None:
    for name, array in outputs.items():
        got = array.shape[0] if array.ndim else 1
        if got != rows:
            raise ValueError(f"output '{name}' has {got} rows for {rows} input rows")


def _cells(value: Any) -> Any:
    """One row's value for a report: a scalar, or its first few elements as a flat list."""
    array = np.asarray(value)
    if array.ndim == 0:
        return jsonable(array.item())
    flat = array.reshape(-1)
    cells = [jsonable(item) for item in flat[:_CELLS].tolist()]
    return [*cells, f"... ({flat.size} values)"] if flat.size > _CELLS else cells


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings, bytes as text, numpy scalars as Python ones."""
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value
