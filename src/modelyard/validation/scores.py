"""With labels: each version's accuracy (classification) or RMSE (regression), and the difference
between them with a paired bootstrap confidence interval.

Classification or regression is read off the labels: integer, boolean or text labels are classes;
float labels are classes when the scored output has several values per row (their argmax is the
predicted class index), otherwise they are regression targets. A version's prediction for a row is
the output's value (one per row) or its argmax (several per row).

The interval is a percentile bootstrap over rows, *paired*: each resample draws row indices once
and scores both versions on the same rows, so the noise the two share cancels out. Resamples are
drawn with ``numpy.random.default_rng(seed).integers(0, n, size=(k, n))``, ``k`` resamples at a time,
which gives the same draws as one resample at a time.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

__all__ = ["LabelScores", "bootstrap_interval"]

Metric = Literal["accuracy", "rmse"]
_DRAWS_PER_CHUNK = 1 << 22  # row indices drawn at once (32 MiB of int64)


class LabelScores:
    """Per-row scores of both versions against the labels; holds one number per row and version."""

    def __init__(self, output: str) -> None:
        self.output = output  # the output scored against the labels
        self.metric: Metric | None = None
        self._baseline: list[np.ndarray] = []
        self._candidate: list[np.ndarray] = []

    @property
    def rows(self) -> int:
        return sum(len(part) for part in self._baseline)

    def update(self, labels: np.ndarray, baseline: np.ndarray, candidate: np.ndarray) -> None:
        """Score one batch: ``labels`` and each version's ``output`` for the same rows."""
        if self.metric is None:
            self.metric = _metric(labels, baseline)
        if self.metric == "accuracy":
            self._baseline.append(_correct(labels, baseline))
            self._candidate.append(_correct(labels, candidate))
        else:
            self._baseline.append(_squared_error(labels, baseline))
            self._candidate.append(_squared_error(labels, candidate))

    def summary(self, confidence: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
        """``metric``, each version's value, ``difference`` (candidate - baseline) and its ``ci``."""
        base, cand = self._arrays()
        figures: dict[str, Any] = {
            "metric": self.metric, "output": self.output, "rows": len(base),
            "confidence": confidence, "resamples": resamples, "seed": seed,
        }  # fmt: skip
        if not len(base) or self.metric is None:
            return figures | {"baseline": None, "candidate": None, "difference": None, "ci": None}
        b, c = _value(self.metric, base), _value(self.metric, cand)
        low, high = bootstrap_interval(self.metric, base, cand, confidence, resamples, seed)
        return figures | {"baseline": b, "candidate": c, "difference": c - b, "ci": [low, high]}

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._baseline:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._baseline), np.concatenate(self._candidate)


def bootstrap_interval(
    metric: Metric, baseline: np.ndarray, candidate: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """The percentile interval of ``metric(candidate) - metric(baseline)`` over paired resamples of
    the per-row scores (correct 0/1 for accuracy, squared errors for RMSE)."""
    n = len(baseline)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _DRAWS_PER_CHUNK // max(n, 1))
    differences = np.empty(resamples)
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        index = rng.integers(0, n, size=(k, n))
        base, cand = baseline[index].mean(axis=1), candidate[index].mean(axis=1)
        if metric == "rmse":
            base, cand = np.sqrt(base), np.sqrt(cand)
        differences[done : done + k] = cand - base
        done += k
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return float(low), float(high)


def _value(metric: Metric, scores: np.ndarray) -> float:
    mean = float(scores.mean())
    return math.sqrt(mean) if metric == "rmse" else mean


def _metric(labels: np.ndarray, output: np.ndarray) -> Metric:
    per_row = int(np.prod(output.shape[1:])) if output.ndim > 1 else 1
    if labels.dtype.kind in "biuUSO" or per_row > 1:
        return "accuracy"
    return "rmse"


def _predicted(output: np.ndarray) -> np.ndarray:
    rows = output.shape[0] if output.ndim else 1
    flat = output.reshape(rows, -1)
    return flat[:, 0] if flat.shape[1] == 1 else np.argmax(flat, axis=1)


def _correct(labels: np.ndarray, output: np.ndarray) -> np.ndarray:
    predicted = _predicted(output)
    truth = labels.reshape(-1)
    if predicted.dtype.kind in "OUS" or truth.dtype.kind in "OUS":
        as_text = np.vectorize(_text, otypes=[object])
        return np.asarray(as_text(predicted) == as_text(truth), dtype=np.float64)
    return np.asarray(predicted == truth, dtype=np.float64)


def _squared_error(labels: np.ndarray, output: np.ndarray) -> np.ndarray:
    predicted = _predicted(output).astype(np.float64)
    error = predicted - labels.reshape(-1).astype(np.float64)
    return np.asarray(error * error, dtype=np.float64)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
