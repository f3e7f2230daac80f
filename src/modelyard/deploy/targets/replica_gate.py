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

A p99 is read only from :data:`~modelyard.validation.evidence.P99_SAMPLES` latencies (the rule the
rollout's p99 gate reads too): of fewer, the p99 is the slowest answer, and one slow request (a GC
pause, a fresh replica's cold cache) would fail a good replica. Until the new replica has that many
the p99 gate is *inconclusive*; a sibling with fewer is left out of the median, and with no sibling
left it is inconclusive too. Still inconclusive at the end of the watch, it fails, as too few
requests do: the gate never passes a latency it could not read (docs/rollout.md).

An error-rate failure is read as soon as the new replica has answered ``min_requests`` requests;
a p99 failure, like a pass, only at the end of the watch, on all its latencies: a slow answer is
still a right one, and a p99 read early swings with every slow request (as a rollout step's).
The deploy plane does not import the analysis: the control plane hands the target a
:class:`ReplicaEvidence` (``OnlineAnalysis`` is one) at start-up; only the histogram's rules
(``validation.evidence``, no analysis) are imported.

Every reading is also reported as a :class:`GateReport` — while the watch runs (``watching``: the
figures so far, the time left) and at its end (the verdict) — so the figures are where operators
look, not only in a failed apply's message: a :class:`GateReporter` target keeps each version's
newest report, which ``DeployService`` shows in ``deploy status`` and records in the apply's history.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from modelyard.deploy.backend import VersionKey
from modelyard.deploy.spec import ReplicaGate
from modelyard.validation.evidence import P99_SAMPLES, p99_read

__all__ = [
    "NO_EVIDENCE",
    "GateFigures",
    "GateReport",
    "GateReporter",
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

    @property
    def latency_counts(self) -> tuple[int, ...]:
        """The latency histogram over ``validation.evidence.LATENCY_BUCKETS_MS``."""
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


class GateFigures(NamedTuple):
    """What a reading compared: the new replica's answers against its siblings' (pooled errors, the
    median of their p99s), over the same span. A p99 is None below ``P99_SAMPLES`` latencies (or
    above the top bucket); ``latencies``: the new replica's timed answers; ``siblings_with_p99``:
    how many siblings had enough of them to count in the median. None: no data."""

    requests: int
    errors: int
    error_rate: float | None
    siblings_requests: int
    siblings_error_rate: float | None
    p99_ms: float | None
    siblings_p99_ms: float | None
    p99_ratio: float | None
    latencies: int
    siblings_with_p99: int

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON data: a non-finite value (a p99 beyond the top bucket) is None."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in self._asdict().items()
        }


@dataclasses.dataclass(frozen=True)
class Reading:
    """A reading of the gate: ``pass``, ``fail`` or ``inconclusive``, with the figures behind it
    (``figures``: None when none were read; not compared: two readings with one outcome and one
    text are the same reading)."""

    outcome: str
    detail: str
    figures: GateFigures | None = dataclasses.field(default=None, compare=False)

    def failure(self, replica: str) -> str:
        """Why the update stopped at new replica ``replica`` (a failed or inconclusive reading)."""
        how = "failed" if self.outcome == "fail" else "was inconclusive on"
        return (
            f"replica {replica} {how} its replica_gate: {self.detail}; it was stopped, the old replicas go on"
        )


def _figures(new: ReplicaFigures | None, siblings: Sequence[ReplicaFigures]) -> GateFigures:
    answered = new.requests if new is not None else 0
    errors = new.errors if new is not None else 0
    theirs = sum(s.requests for s in siblings)
    # A sibling with too few latencies has no p99 to speak of: it is left out of the median.
    p99s = [p for s in siblings if (p := p99_read(s.latency_counts)) is not None]
    mine = p99_read(new.latency_counts) if new is not None else None
    sibling_p99 = statistics.median(p99s) if p99s else None
    return GateFigures(
        requests=answered,
        errors=errors,
        error_rate=errors / answered if answered else None,
        siblings_requests=theirs,
        siblings_error_rate=sum(s.errors for s in siblings) / theirs if theirs else None,
        p99_ms=mine,
        siblings_p99_ms=sibling_p99,
        p99_ratio=mine / sibling_p99 if mine is not None and sibling_p99 else None,
        latencies=sum(new.latency_counts) if new is not None else 0,
        siblings_with_p99=len(p99s),
    )


def judge(
    gate: ReplicaGate, new: ReplicaFigures | None, siblings: Sequence[ReplicaFigures], *, ended: bool = True
) -> Reading:
    """Read ``gate`` on the new replica's figures against its siblings' (all for the same span).
    ``ended``: the watch is over; before, a p99 over the ratio is not a failure yet (inconclusive)."""
    f = _figures(new, siblings)
    if f.requests < gate.min_requests:
        return Reading(
            "inconclusive", f"the new replica answered {f.requests} of {gate.min_requests} requests", f
        )
    figures = [f"{f.requests} requests"]
    failed: list[str] = []
    if gate.max_error_rate is not None:
        rate, theirs = f.error_rate or 0.0, f.siblings_error_rate or 0.0
        text = f"error rate {rate:.3f} (siblings {theirs:.3f}, at most +{gate.max_error_rate:g})"
        (failed if rate > theirs + gate.max_error_rate else figures).append(text)
    missing = ""
    if gate.max_p99_ratio is not None:
        outcome, text = _latency(gate.max_p99_ratio, f, ended=ended)
        if outcome == "inconclusive" and not failed:
            missing = text
        else:
            (failed if outcome == "fail" else figures).append(text)
    if failed:
        return Reading("fail", "; ".join(failed + figures), f)
    if missing:
        return Reading("inconclusive", "; ".join([missing, *figures]), f)
    return Reading("pass", "; ".join(figures), f)


def _latency(ratio: float, f: GateFigures, *, ended: bool) -> tuple[str, str]:
    """The p99 gate: its outcome and its text. Inconclusive without a p99 each side (too few
    latencies) and, before the watch's end, over the ratio (a p99 is judged at the end only)."""
    if f.p99_ms is None:
        return "inconclusive", f"a p99 needs {P99_SAMPLES} latencies: the new replica has {f.latencies}"
    if f.siblings_p99_ms is None or f.p99_ratio is None:
        return "inconclusive", f"a p99 needs {P99_SAMPLES} latencies: no sibling has as many"
    text = (
        f"p99 {f.p99_ms:g} ms (siblings {f.siblings_p99_ms:g} ms, ratio {f.p99_ratio:.2f}, at most {ratio:g})"
    )
    if f.p99_ratio <= ratio:
        return "pass", text
    return ("fail", text) if ended else ("inconclusive", f"{text}, judged at the end")


@dataclasses.dataclass(frozen=True)
class GateReport:
    """A replica gate as the deploy history and status show it: ``state`` is ``watching`` while the
    new replica is watched (``detail`` and ``figures``: the reading so far), then the verdict
    (``pass``, ``fail``, ``inconclusive``). Times are wall-clock seconds since the epoch."""

    key: VersionKey
    replica: str  # the new replica's id
    url: str
    siblings: int  # how many old replicas it is compared with
    gate: ReplicaGate
    state: str
    detail: str
    figures: GateFigures | None
    started_at: float
    ends_at: float  # when the watch ends at the latest
    read_at: float

    @property
    def watching(self) -> bool:
        return self.state == "watching"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """JSON data, ISO 8601 times; ``time_left_s`` (at ``now``) while watching, else None."""
        now = time.time() if now is None else now
        project, model, version = self.key
        return {
            "project": project, "model": model, "version": version,
            "replica": self.replica, "url": self.url, "siblings": self.siblings,
            "gate": self.gate.model_dump(by_alias=True),
            "state": self.state, "detail": self.detail,
            "figures": self.figures.to_dict() if self.figures is not None else None,
            "started_at": _iso(self.started_at), "read_at": _iso(self.read_at),
            "time_left_s": max(0.0, self.ends_at - now) if self.watching else None,
        }  # fmt: skip


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@runtime_checkable
class GateReporter(Protocol):
    """A target that keeps each version's newest :class:`GateReport` (``LocalTarget``)."""

    def replica_gates(self) -> list[GateReport]:
        """The newest report of each version it runs: a watch in progress, or the last verdict."""
        ...


class ReplicaWatch:
    """Watches a new replica for ``gate.duration`` against its siblings (see the module).
    ``report``: called with a :class:`GateReport` when the watch starts, after every reading and
    with the verdict; ``clock`` times the watch, ``wall`` dates the reports."""

    def __init__(
        self,
        evidence: ReplicaEvidence,
        key: VersionKey,
        gate: ReplicaGate,
        *,
        tick_s: float = _TICK_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        report: Callable[[GateReport], None] | None = None,
    ) -> None:
        self.evidence = evidence
        self.key = key
        self.gate = gate
        self.tick_s = tick_s
        self.clock = clock
        self.wall = wall
        self.report = report

    def run(
        self,
        new: str,
        siblings: list[str],
        alive: Callable[[], bool],
        stop: threading.Event,
        *,
        replica: str = "",
    ) -> Reading:
        """Watch replica ``new`` (a URL; ``replica``: its id) beside ``siblings``: the reading at the
        end, or the first failure. ``alive``: whether the new replica is still ready; ``stop``: ends
        the watch early."""
        log.info("%s: watching new replica %s beside %d old ones", "/".join(self.key), new, len(siblings))
        started = self.wall()

        def report(state: str, reading: Reading) -> None:
            if self.report is not None:
                self.report(GateReport(
                    self.key, replica, new, len(siblings), self.gate, state, reading.detail,
                    reading.figures, started, started + self.gate.duration, self.wall(),
                ))  # fmt: skip

        report("watching", judge(self.gate, None, []))
        reading = self._watch(new, siblings, alive, stop, lambda now: report("watching", now))
        report(reading.outcome, reading)
        return reading

    def _watch(
        self,
        new: str,
        siblings: list[str],
        alive: Callable[[], bool],
        stop: threading.Event,
        progress: Callable[[Reading], None],
    ) -> Reading:
        start = dict(self.evidence.replica_stats(*self.key))
        until = self.clock() + self.gate.duration
        figures: GateFigures | None = None  # the last ones read, for a verdict that reads none
        while True:
            if stop.wait(self.tick_s):
                return Reading("fail", "the target was closed while the new replica was watched", figures)
            if not alive():
                return Reading("fail", "the new replica stopped being ready while it was watched", figures)
            now = self.evidence.replica_stats(*self.key)
            step = {url: self._since(now, start, url) for url in (new, *siblings)}
            ended = self.clock() >= until
            theirs = [s for url in siblings if (s := step[url]) is not None]
            reading = judge(self.gate, step[new], theirs, ended=ended)
            figures = reading.figures
            if reading.outcome == "fail":
                return reading
            if ended:
                if not self.evidence.healthy():
                    return Reading(
                        "inconclusive", "the online analysis cannot read the inference log", figures
                    )
                log.info(
                    "%s: new replica %s: %s (%s)", "/".join(self.key), new, reading.outcome, reading.detail
                )
                return reading
            progress(reading)

    @staticmethod
    def _since(
        now: Mapping[str, ReplicaFigures], start: Mapping[str, ReplicaFigures], url: str
    ) -> ReplicaFigures | None:
        figures, earlier = now.get(url), start.get(url)
        if figures is None:
            return None
        return figures if earlier is None else figures.since(earlier)
