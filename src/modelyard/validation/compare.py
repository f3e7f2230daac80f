"""Two versions' answers to the same rows, compared: the figures every validation gate reads.

A :class:`Comparison` is a running accumulator. Feed it batches (offline, ``modelyard validate``)
or single rows (online, one mirrored request at a time) with :meth:`Comparison.update`; count the
rows either version failed to answer with :meth:`Comparison.add_errors` and each version's latency
with :meth:`Comparison.add_latency`; two comparisons of the same pair merge with
:meth:`Comparison.merge`. Memory is bounded whatever the number of rows: counters, fixed-edge
histograms, a capped confusion table and the few worst rows. :meth:`Comparison.summary` renders the
figures as a plain, JSON-ready dict, which :mod:`modelyard.validation.policy` gates.

How an output is compared depends on its *kind* (chosen per output, or guessed from the baseline's
first answer):

- ``label``: one value per row (class ids, strings, booleans): the rows agree when the values are
  equal; a confusion table between the versions is kept.
- ``scores``: several floats per row (probabilities, logits): the rows agree when their argmax is
  the same class; the confusion table is kept over the argmax, the differences over the scores.
- ``numeric``: numbers (one or several per row): the rows agree when every element is close,
  ``|c - b| <= abs_tol + rel_tol * |b|`` (``numpy.isclose``), NaN agreeing with NaN.
- ``exact``: anything else: the rows agree when they are identical.

Every kind also counts exact matches, and every numeric output its absolute and relative
differences and NaN/Inf values. A row *agrees* when every output agrees; ``agreement`` is agreed
rows over compared rows, and None when none was compared: no data is never a pass, nor zero. A row
is *compared* when the baseline answered it: a row the candidate failed (or refused) while the
baseline answered counts as compared and disagreeing — a user would have seen a wrong answer — and
as a candidate error too. Online, rows come grouped in answers (``answers`` in
:meth:`Comparison.update`) and these counters count answers, an answer agreeing when all its rows do.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from modelyard.validation.evidence import LATENCY_BUCKETS_MS, bucket_quantile

__all__ = [
    "DIFF_EDGES",
    "KINDS",
    "Comparison",
    "Kind",
    "Latency",
    "OutputComparison",
    "Tolerance",
    "WorstRow",
    "output_kind",
]

Kind = Literal["label", "scores", "numeric", "exact"]
KINDS: tuple[str, ...] = ("label", "scores", "numeric", "exact")
Side = Literal["baseline", "candidate"]

# Upper edges of the difference histogram (per row: the largest absolute difference of its
# elements): exactly 0, then one bucket per decade up to 1e6, then everything above (Inf included).
DIFF_EDGES: tuple[float, ...] = (0.0, *(10.0**e for e in range(-12, 7)))
MAX_CONFUSION_LABELS = 64  # distinct labels per side kept apart; the rest count as OTHER
OTHER = "(other)"
WORST_ROWS = 20


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """When two numbers count as the same answer: ``|c - b| <= abs_tol + rel_tol * |b|``."""

    abs_tol: float = 1e-6
    rel_tol: float = 1e-5


def output_kind(array: np.ndarray) -> Kind:
    """The kind an output is compared as, guessed from a batch of it (rows along axis 0)."""
    per_row = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
    dtype_kind = array.dtype.kind
    if dtype_kind == "f":
        return "scores" if per_row > 1 else "numeric"
    if dtype_kind in "biu" or dtype_kind in "USO":
        return "label" if per_row == 1 else ("numeric" if dtype_kind in "iu" else "exact")
    return "exact"


@dataclasses.dataclass(frozen=True, order=True)
class WorstRow:
    """One of the rows whose answers differed most: disagreements first, then the larger difference."""

    disagreed: bool
    max_abs_diff: float
    key: Any = dataclasses.field(compare=False)  # the row's index offline, its request id online
    outputs: tuple[str, ...] = dataclasses.field(compare=False, default=())  # the outputs that disagreed


class Latency:
    """How long a version took per call (batch offline, request online): count, sum, max, buckets."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def add(self, seconds: float, rows: int = 1) -> None:
        ms = seconds * 1000.0
        self.calls += 1
        self.rows += rows
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1

    def merge(self, other: Latency) -> None:
        self.calls += other.calls
        self.rows += other.rows
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (ms) as the upper bound of its bucket (beyond the last bound: the
        slowest call); None without calls."""
        return bucket_quantile(self.counts, q, above=self.max_ms)

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "rows": self.rows,
            "mean_ms": self.total_ms / self.calls if self.calls else None,
            "p50_ms": self.quantile(0.5),
            "p99_ms": self.quantile(0.99),
            "max_ms": self.max_ms if self.calls else None,
            "ms_per_row": self.total_ms / self.rows if self.rows else None,
        }


class OutputComparison:
    """The figures of one output across every row compared so far."""

    def __init__(self, name: str, kind: Kind, tolerance: Tolerance) -> None:
        self.name = name
        self.kind: Kind = kind
        self.tolerance = tolerance
        self.rows = 0
        self.agreed = 0
        self.exact = 0
        self.mismatched = 0  # rows where the two answers' shapes or types could not be compared
        self.numeric = False
        self.elements = 0
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.sum_rel = 0.0
        self.max_rel = 0.0
        self.nonfinite = {"baseline": 0, "candidate": 0}
        self.histogram = [0] * (len(DIFF_EDGES) + 1)
        self.confusion: dict[tuple[str, str], int] = {}
        self._labels: dict[str, set[str]] = {"baseline": set(), "candidate": set()}

    def update(self, baseline: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Compare one batch (rows along axis 0); returns each row's (agreed, max |difference|)."""
        rows = baseline.shape[0] if baseline.ndim else 1
        base, cand = (
            baseline.reshape(rows, -1),
            candidate.reshape(candidate.shape[0] if candidate.ndim else 1, -1),
        )
        self.rows += rows
        if base.shape != cand.shape:
            self.mismatched += rows
            return np.zeros(rows, dtype=bool), np.full(rows, math.inf)
        exact = _rows_equal(base, cand)
        self.exact += int(exact.sum())
        diffs = self._differences(base, cand) if _is_number(base) and _is_number(cand) else None
        row_diff = diffs if diffs is not None else np.where(exact, 0.0, math.inf)
        if self.kind == "label":
            agreed = exact
            self._confuse(base[:, 0], cand[:, 0])
        elif self.kind == "scores" and diffs is not None:
            b_arg, c_arg = np.argmax(base, axis=1), np.argmax(cand, axis=1)
            agreed = b_arg == c_arg
            self._confuse(b_arg, c_arg)
        elif self.kind in ("numeric", "scores") and diffs is not None:
            agreed = _rows_close(base, cand, self.tolerance)
        else:
            agreed = exact
        self.agreed += int(agreed.sum())
        return agreed, row_diff

    def _differences(self, base: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Accumulate the element differences; returns each row's largest absolute difference."""
        self.numeric = True
        b, c = base.astype(np.float64), cand.astype(np.float64)
        self.nonfinite["baseline"] += int((~np.isfinite(b)).sum())
        self.nonfinite["candidate"] += int((~np.isfinite(c)).sum())
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            both_nan = np.isnan(b) & np.isnan(c)
            same_inf = np.isinf(b) & (b == c)
            absolute = np.where(both_nan | same_inf, 0.0, np.abs(c - b))
            absolute = np.where(np.isnan(absolute), math.inf, absolute)  # NaN against a number
            scale = np.abs(b)
            # Relative to the baseline: any difference from a baseline of 0 is infinitely large.
            relative = np.where(absolute == 0.0, 0.0, absolute / np.where(scale > 0, scale, 0.0))
            relative = np.where(np.isnan(relative), math.inf, relative)
        if absolute.size:
            self.elements += absolute.size
            self.sum_abs += float(absolute.sum())
            self.sum_rel += float(relative.sum())
            self.max_abs = max(self.max_abs, float(absolute.max()))
            self.max_rel = max(self.max_rel, float(relative.max()))
        row_max = absolute.max(axis=1) if absolute.shape[1] else np.zeros(absolute.shape[0])
        for index in np.searchsorted(DIFF_EDGES, row_max, side="left"):
            self.histogram[int(index)] += 1
        return np.asarray(row_max, dtype=np.float64)

    def _confuse(self, base: np.ndarray, cand: np.ndarray) -> None:
        for b, c in zip(base.tolist(), cand.tolist(), strict=True):
            pair = (self._label("baseline", b), self._label("candidate", c))
            self.confusion[pair] = self.confusion.get(pair, 0) + 1

    def _label(self, side: Side, value: object) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        seen = self._labels[side]
        if text in seen:
            return text
        if len(seen) >= MAX_CONFUSION_LABELS:
            return OTHER
        seen.add(text)
        return text

    def merge(self, other: OutputComparison) -> None:
        for name in ("rows", "agreed", "exact", "mismatched", "elements", "sum_abs", "sum_rel"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.numeric = self.numeric or other.numeric
        self.max_abs = max(self.max_abs, other.max_abs)
        self.max_rel = max(self.max_rel, other.max_rel)
        for side in ("baseline", "candidate"):
            self.nonfinite[side] += other.nonfinite[side]
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        for (b, c), count in other.confusion.items():
            pair = (self._label("baseline", b), self._label("candidate", c))
            self.confusion[pair] = self.confusion.get(pair, 0) + count

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "kind": self.kind,
            "rows": self.rows,
            "agreed": self.agreed,
            "agreement": self.agreed / self.rows if self.rows else None,
            "exact_match": self.exact / self.rows if self.rows else None,
            "mismatched": self.mismatched,
        }
        if self.numeric:
            figures |= {
                "max_abs_diff": self.max_abs if self.elements else None,
                "mean_abs_diff": self.sum_abs / self.elements if self.elements else None,
                "max_rel_diff": self.max_rel if self.elements else None,
                "mean_rel_diff": self.sum_rel / self.elements if self.elements else None,
                "nonfinite": dict(self.nonfinite),
                "histogram": {"edges": list(DIFF_EDGES), "counts": list(self.histogram)},
            }
        if self.kind in ("label", "scores"):
            pairs = sorted(self.confusion.items(), key=lambda item: (-item[1], item[0]))
            figures["confusion"] = [[b, c, n] for (b, c), n in pairs]
        return figures


class Comparison:
    """Everything known about a (baseline, candidate) pair's answers to the same rows.

    ``kinds`` forces how an output is compared (see the module doc); outputs not named there are
    guessed from the baseline's first answer. ``outputs`` limits the comparison to those outputs.
    """

    def __init__(
        self,
        tolerance: Tolerance | None = None,
        kinds: Mapping[str, Kind] | None = None,
        outputs: Sequence[str] | None = None,
        worst: int = WORST_ROWS,
    ) -> None:
        self.tolerance = tolerance or Tolerance()
        self.kinds: dict[str, Kind] = dict(kinds or {})
        self.only = tuple(outputs) if outputs else None
        self.rows = 0  # rows sent to both versions
        self.compared = 0  # rows the baseline answered (those the candidate failed included)
        self.agreed = 0
        self.errors = {"baseline": 0, "candidate": 0}
        self.missing: dict[str, int] = {}  # output name -> rows where one version lacked it
        self.outputs: dict[str, OutputComparison] = {}
        self.latency = {"baseline": Latency(), "candidate": Latency()}
        self._worst_size = worst
        self._worst: list[WorstRow] = []  # a min-heap: the least bad of the kept rows on top

    def update(
        self,
        baseline: Mapping[str, np.ndarray],
        candidate: Mapping[str, np.ndarray],
        keys: Sequence[Hashable] | None = None,
        answers: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Compare the two versions' answers to one batch of rows (outputs by name, rows along
        axis 0); ``keys`` name the rows (default: their running index). Returns which rows agreed.

        ``answers``: how many consecutive rows each answer holds, when the batch is several answers
        (online: requests of several rows). ``rows``, ``compared`` and ``agreed`` then count
        answers, an answer agreeing when every row of it does, and the return value is per answer;
        each output's own figures (differences, confusion, exact matches) still count rows."""
        rows = _batch_rows(baseline, candidate)
        if keys is not None and len(keys) != rows:
            raise ValueError(f"{len(keys)} keys for {rows} rows")
        if answers is not None and (sum(answers) != rows or min(answers, default=1) < 1):
            raise ValueError(f"answers of {list(answers)} rows for a batch of {rows} rows")
        row_keys: Sequence[Hashable] = keys if keys is not None else range(self.rows, self.rows + rows)
        agreed = np.ones(rows, dtype=bool)
        worst_diff = np.zeros(rows)
        disagreeing: list[tuple[str, np.ndarray]] = []
        for name in self._names(baseline, candidate):
            if name not in baseline or name not in candidate:
                self.missing[name] = self.missing.get(name, 0) + rows
                agreed[:] = False
                disagreeing.append((name, np.ones(rows, dtype=bool)))
                continue
            base, cand = np.asarray(baseline[name]), np.asarray(candidate[name])
            output = self._output(name, base)
            ok, diff = output.update(base, cand)
            agreed &= ok
            worst_diff = np.maximum(worst_diff, diff)
            disagreeing.append((name, ~ok))
        self._keep_worst(row_keys, agreed, worst_diff, disagreeing)
        counted = agreed
        if answers is not None and len(answers) != rows:
            counted = np.logical_and.reduceat(agreed, np.cumsum([0, *answers[:-1]]))
        self.rows += len(counted)
        self.compared += len(counted)
        self.agreed += int(counted.sum())
        return counted

    def add_errors(self, rows: int = 1, *, baseline: bool = False, candidate: bool = False) -> None:
        """Rows sent to both versions that ``baseline`` and/or ``candidate`` failed to answer. A row
        only the candidate failed is compared too, and disagrees (see the module doc)."""
        self.rows += rows
        self.errors["baseline"] += rows if baseline else 0
        self.errors["candidate"] += rows if candidate else 0
        if candidate and not baseline:
            self.compared += rows

    def add_unvalued(self, rows: int = 1, *, agreed: bool) -> None:
        """Rows both versions answered, compared without values: two equal refusals (``agreed``),
        or answers that cannot agree (an answer against a refusal, different numbers of rows)."""
        self.rows += rows
        self.compared += rows
        self.agreed += rows if agreed else 0

    def add_latency(self, side: Side, seconds: float, rows: int = 1) -> None:
        """One call of ``side`` (a batch of ``rows``) took ``seconds``."""
        self.latency[side].add(seconds, rows)

    def merge(self, other: Comparison) -> None:
        """Add ``other``'s figures (the same pair, other rows) to these."""
        self.rows += other.rows
        self.compared += other.compared
        self.agreed += other.agreed
        for side in ("baseline", "candidate"):
            self.errors[side] += other.errors[side]
            self.latency[side].merge(other.latency[side])
        for name, count in other.missing.items():
            self.missing[name] = self.missing.get(name, 0) + count
        for name, output in other.outputs.items():
            if name in self.outputs:
                self.outputs[name].merge(output)
            else:
                self.outputs[name] = mine = OutputComparison(name, output.kind, self.tolerance)
                mine.merge(output)
        for row in other._worst:
            self._push_worst(row)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def worst_rows(self) -> list[WorstRow]:
        """The rows that differed most, worst first."""
        return sorted(self._worst, reverse=True)

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (the keys :class:`~modelyard.validation.policy.Policy` reads)."""
        outputs = {name: output.summary() for name, output in sorted(self.outputs.items())}
        numeric = [o for o in self.outputs.values() if o.numeric and o.elements]
        nonfinite = {side: sum(o.nonfinite[side] for o in self.outputs.values()) for side in self.errors}
        return {
            "rows": self.rows,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "errors": dict(self.errors),
            "error_rate": {side: (n / self.rows if self.rows else None) for side, n in self.errors.items()},
            "max_abs_diff": max((o.max_abs for o in numeric), default=None),
            "max_rel_diff": max((o.max_rel for o in numeric), default=None),
            "nonfinite": nonfinite,
            "missing_outputs": dict(self.missing),
            "tolerance": dataclasses.asdict(self.tolerance),
            "outputs": outputs,
            "latency": {side: latency.summary() for side, latency in self.latency.items()},
            "worst": [
                {
                    "key": _jsonable(r.key),
                    "disagreed": r.disagreed,
                    "max_abs_diff": r.max_abs_diff,
                    "outputs": list(r.outputs),
                }
                for r in self.worst_rows()
            ],
        }

    def _names(self, baseline: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> list[str]:
        if self.only is not None:
            return list(self.only)
        return list(dict.fromkeys([*baseline, *candidate]))

    def _output(self, name: str, first: np.ndarray) -> OutputComparison:
        output = self.outputs.get(name)
        if output is None:
            kind = self.kinds.get(name) or output_kind(first)
            output = self.outputs[name] = OutputComparison(name, kind, self.tolerance)
        return output

    def _keep_worst(
        self,
        keys: Sequence[Hashable],
        agreed: np.ndarray,
        diff: np.ndarray,
        disagreeing: list[tuple[str, np.ndarray]],
    ) -> None:
        if self._worst_size <= 0:
            return
        # Only rows that could enter the heap are looked at: disagreements and the largest diffs.
        candidates = np.flatnonzero(~agreed | (diff > 0))
        if candidates.size > self._worst_size:
            order = np.lexsort((-diff[candidates], agreed[candidates]))  # disagreed first, then diff
            candidates = candidates[order[: self._worst_size]]
        for index in candidates.tolist():
            names = tuple(name for name, bad in disagreeing if bad[index])
            self._push_worst(WorstRow(not bool(agreed[index]), float(diff[index]), keys[index], names))

    def _push_worst(self, row: WorstRow) -> None:
        if len(self._worst) < self._worst_size:
            heapq.heappush(self._worst, row)
        elif row > self._worst[0]:
            heapq.heapreplace(self._worst, row)


def _batch_rows(baseline: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> int:
    sizes = {
        int(np.asarray(a).shape[0]) if np.ndim(a) else 1 for a in (*baseline.values(), *candidate.values())
    }
    if len(sizes) != 1:
        raise ValueError(f"the outputs of one batch disagree on its number of rows: {sorted(sizes)}")
    return sizes.pop()


def _is_number(array: np.ndarray) -> bool:
    return array.dtype.kind in "biuf"


def _rows_equal(base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    if "f" in (base.dtype.kind, cand.dtype.kind) and _is_number(base) and _is_number(cand):
        with np.errstate(invalid="ignore"):
            same = (base == cand) | (np.isnan(base) & np.isnan(cand))
    else:  # text against numbers compares unequal (numpy answers False), never raises
        same = np.asarray(base == cand)
    if same.ndim < 2:  # numpy compared incompatible types as one scalar
        return np.zeros(base.shape[0], dtype=bool)
    return np.asarray(same.all(axis=1), dtype=bool)


def _rows_close(base: np.ndarray, cand: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    b, c = base.astype(np.float64), cand.astype(np.float64)
    close = np.isclose(c, b, rtol=tolerance.rel_tol, atol=tolerance.abs_tol, equal_nan=True)
    return np.asarray(close.all(axis=1), dtype=bool)


def _jsonable(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
