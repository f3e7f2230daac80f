"""What the online analysis knows about each version of a route, as a rollout reads it.

The analysis (``validation/online.py``) reads the gateway's inference log and keeps, per
``(project, model, version)``, *cumulative* counters since it started: requests answered, errors,
a latency histogram, and — for a version mirrored or canaried against a baseline — how many of its
answers were compared with the baseline's answer to the same request and how many agreed. A
rollout step takes a snapshot when it starts and another when it ends; the difference
(:meth:`VersionStats.since`) is the step's own evidence, so steps never mix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

__all__ = [
    "LATENCY_BUCKETS_MS",
    "P99_SAMPLES",
    "ComparePolicy",
    "Evidence",
    "ReplicaEvidence",
    "VersionStats",
    "bucket_quantile",
    "p99_read",
]

# Upper bounds (ms) of the latency histogram's buckets, 0.1 ms to 85 s; one more bucket holds
# everything above. No bucket is more than 1.2x wider at its top than at its bottom, so a p99
# read from it (and a p99-ratio gate) is never off by more than 20 %, at 103 counters a version.
_STEPS = (1, 1.15, 1.3, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 7.5, 8.5)
LATENCY_BUCKETS_MS: tuple[float, ...] = tuple(
    round(step * decade, 4) for decade in (0.1, 1, 10, 100, 1000, 10000) for step in _STEPS
)


def bucket_quantile(counts: Sequence[int], q: float, above: float = math.inf) -> float | None:
    """The ``q`` quantile (ms) of a latency histogram over :data:`LATENCY_BUCKETS_MS`, as the upper
    bound of the first non-empty bucket that reaches it; ``above`` when it lies in the last bucket
    (beyond every bound: the largest latency seen, where it is known); None without any count."""
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(counts):
        seen += count
        if count and seen >= rank:
            return LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else above
    return above


# Latencies a p99 needs: of n latencies the p99 is the one at rank 0.99 n, so below 100 it is the
# largest seen and a single slow request (a GC pause, a cold cache) would decide it. The rollout's
# p99 gate and the deploy plane's replica gate both read a p99 only from this many.
P99_SAMPLES = 100


def p99_read(counts: Sequence[int]) -> float | None:
    """The p99 (ms) of a latency histogram (:func:`bucket_quantile`) when it holds at least
    :data:`P99_SAMPLES` latencies; None with fewer: too few to read one."""
    return bucket_quantile(counts, 0.99) if sum(counts) >= P99_SAMPLES else None


@dataclasses.dataclass(frozen=True)
class VersionStats:
    """Cumulative figures for one version (primary answers and mirrored copies counted apart)."""

    requests: int = 0  # primary answers: what users got from this version
    errors: int = 0  # primary answers with status >= 500 (or no answer at all)
    latency_counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_MS) + 1)  # primary answers
    mirrored: int = 0  # mirrored copies this version answered
    mirror_errors: int = 0
    compared: int = 0  # answers (primary or mirrored) compared with the baseline's, same request
    agreed: int = 0  # of those, how many agreed under the policy's comparison
    unmatched: int = 0  # answers whose counterpart never arrived (evicted from the join window)
    # Mirrored copies' latency: a candidate only mirrored has no primary latency yet, and its
    # copies are timed from when the gateway sent them (their wait in the mirror queue excluded).
    mirror_latency_counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_MS) + 1)

    def since(self, earlier: VersionStats) -> VersionStats:
        """The figures accumulated after ``earlier`` (a snapshot of the same version)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in fields.items():
            before = getattr(earlier, name)
            if isinstance(value, tuple):
                fields[name] = tuple(a - b for a, b in zip(value, before, strict=True))
            else:
                fields[name] = value - before
        return VersionStats(**fields)

    @property
    def error_rate(self) -> float | None:
        """Errors over requests; None without requests (no data is never a pass, nor zero)."""
        return self.errors / self.requests if self.requests else None

    @property
    def mirror_error_rate(self) -> float | None:
        """Mirrored copies that failed over those sent; None without any."""
        return self.mirror_errors / self.mirrored if self.mirrored else None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def latency_quantile(self, q: float, *, mirrored: bool = False) -> float | None:
        """The ``q`` quantile of latency (ms), as the upper bound of its bucket; None without data.
        ``mirrored``: of the mirrored copies instead of the primary answers."""
        counts = self.mirror_latency_counts if mirrored else self.latency_counts
        return bucket_quantile(counts, q)


@dataclasses.dataclass(frozen=True)
class ComparePolicy:
    """How a route's answers are compared and judged, as a rollout asks for it (the rollout plane
    does not import the validation :class:`~modelyard.validation.policy.Policy`): two numbers agree
    when ``|c - b| <= abs_tol + rel_tol * |b|``; ``outputs`` maps an output's name to its kind
    (``label``, ``scores``, ``numeric``, ``exact``); ``min_agreement`` is the pairs' agreement gate
    (None: not checked). Every other gate is the analysis's own."""

    abs_tol: float
    rel_tol: float
    outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    min_agreement: float | None = None


class Evidence(Protocol):
    """Where a rollout reads its evidence: the online analysis (or a stand-in in unit tests)."""

    def stats(self, project: str, model: str, baseline: str | None = None) -> Mapping[str, VersionStats]:
        """Every version of the route the analysis has seen, by version name (cumulative). A
        version's ``compared`` and ``agreed`` count only its answers compared with ``baseline``'s
        when one is named (a rollout's candidate is judged against its own baseline, not against
        another version mirrored on the same route)."""
        ...

    def healthy(self) -> bool:
        """False when the analysis cannot currently read the log (gates are then inconclusive)."""
        ...

    def compare_with(self, project: str, model: str, policy: ComparePolicy) -> None:
        """Compare the route's answers under ``policy`` from now on (idempotent). A change of how
        answers are compared drops the route's pairs, so that no figure mixes two comparisons: its
        versions' ``compared`` and ``agreed`` fall, which a rollout reads as a restarted analysis."""
        ...


class ReplicaEvidence(Protocol):
    """Per-replica evidence, for an update in place gated replica by replica (the deploy plane's
    ``targets/replica_gate.py`` reads it through a protocol of its own, with the same shape)."""

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, VersionStats]:
        """Primary answers of each replica of the version seen lately, by replica URL (cumulative;
        only ``requests``, ``errors`` and ``latency_counts`` are counted per replica)."""
        ...

    def healthy(self) -> bool:
        """False when the analysis cannot currently read the log."""
        ...
