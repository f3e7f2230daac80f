"""Replica by replica: the gate an update in place of a version's replicas passes, one replica first.

When a version's replicas are replaced (a new package, the same route version) and its spec has a
``replica_gate``, the local target starts *one* new replica, waits until it is ready, and then
watches it for ``replica_gate.for`` beside its old siblings, which go on serving: the gateway
balances the version's traffic over all of them. :class:`ReplicaWatch` reads the evidence — the
online analysis of the gateway's inference log, per replica URL — as a snapshot when the watch
starts and differences after it (``since``), so only answers given during the watch count, and
:func:`judge` reads the gate:

- fewer than ``min_requests`` answers from the new replica: *inconclusive* (at the end: a failure);
- its error rate above its siblings' (pooled) by more than ``max_error_rate``: *fail*;
- its p99 latency over its siblings' (the median of their p99s) above ``max_p99_ratio``: *fail*.

A failure is read as soon as the new replica has answered ``min_requests`` requests; a pass only
at the end of the watch. The deploy plane does not import the analysis: the control plane hands
the target a :class:`ReplicaEvidence` (``OnlineAnalysis`` is one) at start-up.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

from modelyard.deploy.backend import VersionKey
from modelyard.deploy.spec import ReplicaGate

__all__ = [
    "NO_EVIDENCE",
    "GatedTarget",
    "Reading",
    "ReplicaEvidence",
    "ReplicaFigures",
    "ReplicaWatch",
    "judge",
]

_TICK_S = 0.25  # how often a watch reads the evidence
NO_EVIDENCE = (
    "its replica_gate cannot be read: no online analysis of the gateway's log here "
    "(apply through a control plane whose analysis_log is set, or remove replica_gate)"
)
log = logging.getLogger("modelyard.deploy")


class ReplicaFigures(Protocol):
    """One replica's cumulative figures for primary answers (``validation.evidence.VersionStats``)."""

    @property
    def requests(self) -> int: ...

    @property
    def errors(self) -> int: ...

    def since(self, earlier: Any) -> ReplicaFigures:
        """The figures accumulated after ``earlier`` (a snapshot of the same replica)."""
        ...

    def latency_quantile(self, q: float, *, mirrored: bool = False) -> float | None:
        """The ``q`` quantile of latency in ms (None without data)."""
        ...


class ReplicaEvidence(Protocol):
    """Per-replica figures of a version, by replica URL: the online analysis, or a stand-in."""

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, ReplicaFigures]: ...

    def healthy(self) -> bool:
        """False while the evidence cannot be read (then the gate is inconclusive)."""
        ...


@runtime_checkable
class GatedTarget(Protocol):
    """A deploy target that gates updates in place when given evidence (``LocalTarget``)."""

    def use_replica_evidence(self, evidence: ReplicaEvidence | None) -> None: ...


class Reading(NamedTuple):
    """A reading of the gate: ``pass``, ``fail`` or ``inconclusive``, with the figures behind it."""

    outcome: str
    detail: str

    def failure(self, replica: str) -> str:
        """Why the update stopped at new replica ``replica`` (a failed or inconclusive reading)."""
        how = "failed" if self.outcome == "fail" else "was inconclusive on"
        return (
            f"replica {replica} {how} its replica_gate: {self.detail}; it was stopped, the old replicas go on"
        )


def judge(gate: ReplicaGate, new: ReplicaFigures | None, siblings: list[ReplicaFigures]) -> Reading:
    """Read ``gate`` on the new replica's figures against its siblings' (all for the same span)."""
    answered = new.requests if new is not None else 0
    if new is None or answered < gate.min_requests:
        return Reading("inconclusive", f"the new replica answered {answered} of {gate.min_requests} requests")
    figures = [f"{answered} requests"]
    failed: list[str] = []
    sibling_requests = sum(s.requests for s in siblings)
    if gate.max_error_rate is not None:
        rate = new.errors / new.requests
        theirs = sum(s.errors for s in siblings) / sibling_requests if sibling_requests else 0.0
        text = f"error rate {rate:.3f} (siblings {theirs:.3f}, at most +{gate.max_error_rate:g})"
        (failed if rate > theirs + gate.max_error_rate else figures).append(text)
    if gate.max_p99_ratio is not None:
        p99s = [p for s in siblings if s.requests and (p := s.latency_quantile(0.99)) is not None]
        mine = new.latency_quantile(0.99)
        if not p99s or mine is None:
            return Reading("inconclusive", "its siblings answered no requests to compare latency with")
        theirs_p99 = statistics.median(p99s)
        ratio = mine / theirs_p99
        text = (
            f"p99 {mine:g} ms (siblings {theirs_p99:g} ms, ratio {ratio:.2f}, at most {gate.max_p99_ratio:g})"
        )
        (failed if ratio > gate.max_p99_ratio else figures).append(text)
    if failed:
        return Reading("fail", "; ".join(failed + figures))
    return Reading("pass", "; ".join(figures))


class ReplicaWatch:
    """Watches a new replica for ``gate.duration`` against its siblings (see the module)."""

    def __init__(
        self,
        evidence: ReplicaEvidence,
        key: VersionKey,
        gate: ReplicaGate,
        *,
        tick_s: float = _TICK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.evidence = evidence
        self.key = key
        self.gate = gate
        self.tick_s = tick_s
        self.clock = clock

    def run(self, new: str, siblings: list[str], alive: Callable[[], bool], stop: threading.Event) -> Reading:
        """Watch replica ``new`` (a URL) beside ``siblings``: the reading at the end, or the first
        failure. ``alive``: whether the new replica is still ready; ``stop``: ends the watch early."""
        log.info("%s: watching new replica %s beside %d old ones", "/".join(self.key), new, len(siblings))
        start = dict(self.evidence.replica_stats(*self.key))
        until = self.clock() + self.gate.duration
        while True:
            if stop.wait(self.tick_s):
                return Reading("fail", "the target was closed while the new replica was watched")
            if not alive():
                return Reading("fail", "the new replica stopped being ready while it was watched")
            now = self.evidence.replica_stats(*self.key)
            step = {url: self._since(now, start, url) for url in (new, *siblings)}
            reading = judge(self.gate, step[new], [s for url in siblings if (s := step[url]) is not None])
            if reading.outcome == "fail":
                return reading
            if self.clock() >= until:
                if not self.evidence.healthy():
                    return Reading("inconclusive", "the online analysis cannot read the inference log")
                log.info(
                    "%s: new replica %s: %s (%s)", "/".join(self.key), new, reading.outcome, reading.detail
                )
                return reading

    @staticmethod
    def _since(
        now: Mapping[str, ReplicaFigures], start: Mapping[str, ReplicaFigures], url: str
    ) -> ReplicaFigures | None:
        figures, earlier = now.get(url), start.get(url)
        if figures is None:
            return None
        return figures if earlier is None else figures.since(earlier)
