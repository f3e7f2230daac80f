"""Online validation: the gateway's inference log, read as it is written, as evidence.

:class:`OnlineAnalysis` reads a :class:`~modelyard.validation.logread.LogSource` in a thread of its
own and keeps, per ``(project, model, version)``, cumulative :class:`VersionStats` (requests,
errors, latency; mirrored copies apart), so it is the :class:`Evidence` a rollout reads; and per
replica URL the primary answers' requests, errors and latency (:meth:`OnlineAnalysis.replica_stats`),
what an update in place gated replica by replica reads.

It also *joins*: each primary answer with the mirrored answer of each candidate to the same
request (the gateway logs a mirrored copy as a second record, ``role="mirror"``, same request id
and request hash: ``online_join.py``) and compares the two with
:class:`~modelyard.validation.compare.Comparison` — the comparison ``modelyard validate`` makes
offline — one running comparison per (baseline, candidate) pair, judged by a
:class:`~modelyard.validation.policy.Policy`: the route's own when one was set
(:meth:`OnlineAnalysis.compare_with`, what a rollout does with its ``compare`` block), else the
analysis's. That comparison's counters are the only agreement
figures: the pair's (REST, Prometheus, its verdict) and, summed over a candidate's pairs, its
:class:`VersionStats` (a rollout's). A weighted canary has no pairs (each request went to one
version only): it is judged on its own error rate and latency.

What can be compared depends on the route's ``log_payload``: ``full`` logs the bodies, decoded to
arrays and compared with tolerances; ``hash`` logs only hashes, compared exactly; ``none`` logs
neither: :func:`check_route` says why such a route cannot be analysed (the REST view shows it as
``refused``; a rollout that needs answers is refused before it starts, ``rollout/preflight.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from modelyard.errors import Conflict
from modelyard.routing.table import ModelRoute
from modelyard.validation.compare import Comparison
from modelyard.validation.evidence import LATENCY_BUCKETS_MS, ComparePolicy, VersionStats
from modelyard.validation.logread import LogSource
from modelyard.validation.online_answers import HASH_OUTPUT, Answer, answer_bytes, rows_of
from modelyard.validation.online_join import JoinLimits, JoinWindow, Key, Pending
from modelyard.validation.policy import Policy, evaluate, parse_policy, verdict

__all__ = ["OnlineAnalysis", "PairFigures", "PairStats", "check_route"]

log = logging.getLogger("modelyard.validation")

READ_BATCH = 512  # records per read: the lock is held for one batch, so readers wait at most that
READ_WAIT_S = 0.25
# Decoded answers waiting for their pair's batched comparison; beyond this they are compared at
# once, so a batch of large answers never holds more than this (plus one answer) decoded.
MAX_QUEUED_BYTES = 16 << 20
# What a malformed record raises while it is read (before any counter changed).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, OverflowError)
# Per-replica counters are kept for replicas seen in the last REPLICA_TTL_S, at most MAX_REPLICAS of
# them (the least recently seen go first): replica URLs change on every restart.
REPLICA_TTL_S = 600.0
MAX_REPLICAS = 4096


def check_route(route: ModelRoute) -> None:
    """Refuse a route whose inference log cannot show answers (``log_payload`` ``none``)."""
    if route.log_payload == "none":
        raise Conflict(
            f"{route.project}/{route.model} logs no answers (log_payload 'none'): set its log_payload "
            "to 'full' (compare values with tolerances) or 'hash' (exact matches only) before "
            "analysing it (`modelyard route options PROJECT/MODEL --log-payload full`)",
            field="log_payload",
        )


class _Counts:
    """A version's counters while they grow (frozen into a VersionStats on demand; its compared
    and agreed answers are its pairs', summed when frozen)."""

    __slots__ = ("errors", "latency", "mirror_errors", "mirror_latency", "mirrored", "requests", "unmatched")

    def __init__(self) -> None:
        self.requests = self.errors = self.mirrored = self.mirror_errors = self.unmatched = 0
        self.latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.mirror_latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def frozen(self, compared: int = 0, agreed: int = 0) -> VersionStats:
        return VersionStats(
            requests=self.requests, errors=self.errors, latency_counts=tuple(self.latency),
            mirrored=self.mirrored, mirror_errors=self.mirror_errors, compared=compared,
            agreed=agreed, unmatched=self.unmatched, mirror_latency_counts=tuple(self.mirror_latency),
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PairFigures:
    """A pair's counters, copied out for a scrape: answers compared and agreed, and per numeric
    output the histogram of each row's largest absolute difference (``compare.DIFF_EDGES``)."""

    project: str
    model: str
    baseline: str
    candidate: str
    compared: int
    agreed: int
    histograms: dict[str, tuple[int, ...]]


class PairStats:
    """One (baseline, candidate) pair of a route: the running comparison, whose ``compared`` and
    ``agreed`` count answers (see :mod:`~modelyard.validation.compare`: an answer the candidate
    failed while the baseline answered is compared and disagrees), and why others were not compared."""

    def __init__(self, baseline: str, candidate: str, policy: Policy) -> None:
        self.baseline = baseline
        self.candidate = candidate
        kinds = {**policy.outputs, HASH_OUTPUT: "exact"}
        self.comparison = Comparison(policy.tolerance, kinds=kinds)
        self.hashed = 0  # of the compared answers, those compared by hash only
        self.baseline_failed = 0  # pairs not compared: the baseline did not answer
        self.blind = 0  # pairs not compared: neither body nor hash was logged
        self.oversized = 0  # pairs not compared: a body was over JoinLimits.max_body_bytes
        self.incomparable = 0  # compared answers whose types differ (counted as disagreeing)
        self.queue: list[tuple[str, Answer, Answer]] = []  # compared in one batch per read

    @property
    def compared(self) -> int:
        return self.comparison.compared

    @property
    def agreed(self) -> int:
        return self.comparison.agreed

    def figures(self, project: str, model: str) -> PairFigures:
        outputs = self.comparison.outputs.items()
        histograms = {name: tuple(output.histogram) for name, output in outputs if output.numeric}
        return PairFigures(
            project, model, self.baseline, self.candidate, self.compared, self.agreed, histograms
        )

    def to_dict(self, policy: Policy) -> dict[str, Any]:
        summary = self.comparison.summary()
        gates = evaluate(policy, summary)
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.comparison.agreement,
            "hashed": self.hashed,
            "baseline_failed": self.baseline_failed,
            "blind": self.blind,
            "oversized": self.oversized,
            "incomparable": self.incomparable,
            "verdict": verdict(gates).value,
            "gates": [gate.to_dict() for gate in gates],
            "comparison": summary,
        }


def _failed(status: int) -> bool:
    return status >= 500 or status <= 0


class OnlineAnalysis:
    """Per-version stats and per-pair comparisons from the inference log (see the module doc).

    :meth:`feed` takes records directly (tests, benchmarks); :meth:`start` reads ``source`` in a
    background thread until :meth:`stop`. Every public method is safe to call from any thread.
    ``policy`` compares and judges every route whose own was not set (:meth:`compare_with`).
    """

    def __init__(
        self,
        source: LogSource | None = None,
        *,
        policy: Policy | None = None,
        limits: JoinLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.policy = policy or Policy()
        self.window = JoinWindow(limits)
        self.clock = clock
        self.records = 0
        self.malformed = 0
        self.read_failures = 0
        self.oversized = 0  # records whose body was over the join window's max_body_bytes
        self._queued_bytes = 0  # decoded answers in the pairs' queues
        self.problem: str | None = "not started" if source is not None else "no log source"
        self._versions: dict[tuple[str, str, str], _Counts] = {}
        self._replicas: dict[tuple[str, str, str, str], _Counts] = {}  # oldest seen first
        self._replica_seen: dict[tuple[str, str, str, str], float] = {}
        self._pairs: dict[tuple[str, str, str, str], PairStats] = {}
        self._policies: dict[tuple[str, str], Policy] = {}  # a route's own (set by its rollout)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    # -- the Evidence protocol -------------------------------------------------------------------

    def stats(self, project: str, model: str, baseline: str | None = None) -> Mapping[str, VersionStats]:
        """Every version of the route seen so far, by name (cumulative since the start). A
        version's ``compared`` and ``agreed`` are its answers compared with those of ``baseline``,
        or of every baseline when None (the sum of its pairs' figures)."""
        with self._lock:
            compared = self._compared(baseline)
            return {
                key[2]: counts.frozen(*compared.get(key, (0, 0)))
                for key, counts in self._versions.items()
                if key[:2] == (project, model)
            }

    def _compared(self, baseline: str | None = None) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Per candidate version, answers compared and agreed with ``baseline``'s (every one's)."""
        sums: dict[tuple[str, str, str], tuple[int, int]] = {}
        for (project, model, base, candidate), pair in self._pairs.items():
            if baseline is None or base == baseline:
                compared, agreed = sums.get((project, model, candidate), (0, 0))
                sums[(project, model, candidate)] = (compared + pair.compared, agreed + pair.agreed)
        return sums

    def healthy(self) -> bool:
        """True while the last read of the log succeeded."""
        return self.problem is None

    def compare_with(self, project: str, model: str, policy: Policy | ComparePolicy) -> None:
        """Compare and judge the route's answers under ``policy`` from now on (a
        :class:`ComparePolicy`: its tolerances, output kinds and ``min_agreement`` over the
        analysis's own policy). Idempotent. When the comparison itself changes (tolerances or
        output kinds), the route's pairs are dropped, so that no figure counts answers compared two
        ways: its versions' ``compared`` and ``agreed`` start again from zero. A change of gates
        alone keeps them (gates are judged when read). :class:`InvalidInput` names a bad field."""
        if isinstance(policy, ComparePolicy):
            policy = _policy_of(self.policy, policy)
        with self._lock:
            before = self._policies.get((project, model), self.policy)
            self._policies[(project, model)] = policy
            if _compares(before) == _compares(policy):
                return
            dropped = [key for key in self._pairs if key[:2] == (project, model)]
            for key in dropped:
                del self._pairs[key]
        if dropped:
            log.info(
                "online analysis: %s/%s compared another way from now on: %d pairs start again",
                project, model, len(dropped),
            )  # fmt: skip

    def _policy(self, project: str, model: str) -> Policy:
        return self._policies.get((project, model), self.policy)

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, VersionStats]:
        """Each replica of the version seen lately, by URL: its primary answers (cumulative)."""
        with self._lock:
            return {
                url: counts.frozen()
                for (p, m, v, url), counts in self._replicas.items()
                if (p, m, v) == (project, model, version)
            }

    # -- what a rollout or the REST view asks ----------------------------------------------------

    def pairs(self, project: str, model: str) -> list[dict[str, Any]]:
        """Each (baseline, candidate) pair of the route, JSON-ready, gates judged by the route's policy."""
        with self._lock:
            policy = self._policy(project, model)
            return [
                pair.to_dict(policy)
                for (p, m, _, _), pair in sorted(self._pairs.items())
                if p == project and m == model
            ]

    def snapshot(self) -> tuple[dict[tuple[str, str, str], VersionStats], list[PairFigures]]:
        """Every version's stats and every pair's figures at once (for the metrics collector)."""
        with self._lock:
            compared = self._compared()
            versions = {
                key: counts.frozen(*compared.get(key, (0, 0))) for key, counts in self._versions.items()
            }
            pairs = [pair.figures(p, m) for (p, m, _, _), pair in self._pairs.items()]
        return versions, pairs

    # -- records ---------------------------------------------------------------------------------

    def feed(self, lines: Iterable[bytes]) -> None:
        """Take raw records (JSON objects as the gateway wrote them), then compare what joined.
        A malformed record is counted (``malformed``) and skipped; the others are taken."""
        with self._lock:
            now = self.clock()
            for line in lines:
                self.records += 1
                try:
                    parsed = _parse(orjson.loads(line), now, self.window.limits.max_body_bytes)
                except MALFORMED:
                    self.malformed += 1
                    continue
                self._take(*parsed, now)
                if self._queued_bytes > MAX_QUEUED_BYTES:
                    self._compare_queued()
            self._forget_replicas(now)
            for key, mirror in self.window.evict(now):
                self._counts(key[0], key[1], mirror.version).unmatched += 1
            self._compare_queued()

    def _compare_queued(self) -> None:
        for pair_key, pair in self._pairs.items():
            if pair.queue:
                self._compare(pair_key, pair)
        self._queued_bytes = 0

    def _counts(self, project: str, model: str, version: str) -> _Counts:
        counts = self._versions.get((project, model, version))
        if counts is None:
            counts = self._versions[(project, model, version)] = _Counts()
        return counts

    def _replica(self, key: tuple[str, str, str, str], now: float) -> _Counts:
        counts = self._replicas.pop(key, None)  # re-inserted: the dict stays oldest seen first
        self._replica_seen.pop(key, None)
        self._replicas[key] = counts = counts or _Counts()
        self._replica_seen[key] = now
        return counts

    def _forget_replicas(self, now: float) -> None:
        """Drop replicas not seen for REPLICA_TTL_S, and the oldest beyond MAX_REPLICAS."""
        for key, seen in list(self._replica_seen.items()):
            if now - seen < REPLICA_TTL_S and len(self._replicas) <= MAX_REPLICAS:
                break
            del self._replicas[key], self._replica_seen[key]

    def _take(self, key: Key, entry: Pending, mirrored: bool, replica: str | None, now: float) -> None:
        project, model, version = key[0], key[1], entry.version
        counts = self._counts(project, model, version)
        failed = _failed(entry.status)
        bucket = bisect.bisect_left(LATENCY_BUCKETS_MS, entry.latency_ms)
        self.oversized += entry.oversized
        if mirrored:
            counts.mirrored += 1
            counts.mirror_errors += failed
            counts.mirror_latency[bucket] += 1
            primary = self.window.add_mirror(key, entry)
            if primary is not None:
                self._join(key, primary, entry)
        else:
            counts.requests += 1
            counts.errors += failed
            counts.latency[bucket] += 1
            if replica:
                per_replica = self._replica((project, model, version, replica), now)
                per_replica.requests += 1
                per_replica.errors += failed
                per_replica.latency[bucket] += 1
            for mirror in self.window.add_primary(key, entry):
                self._join(key, entry, mirror)

    def _pair(self, project: str, model: str, baseline: str, candidate: str) -> PairStats:
        pair = self._pairs.get((project, model, baseline, candidate))
        if pair is None:
            pair = PairStats(baseline, candidate, self._policy(project, model))
            self._pairs[(project, model, baseline, candidate)] = pair
        return pair

    def _join(self, key: Key, primary: Pending, mirror: Pending) -> None:
        """A primary answer and a mirrored one to the same request: compare them (or say why not)."""
        if primary.version == mirror.version:
            return
        pair = self._pair(key[0], key[1], primary.version, mirror.version)
        comparison = pair.comparison
        comparison.add_latency("baseline", primary.latency_ms / 1000)
        comparison.add_latency("candidate", mirror.latency_ms / 1000)
        if _failed(primary.status):  # nothing to compare the candidate with
            pair.baseline_failed += 1
            comparison.add_errors(baseline=True, candidate=_failed(mirror.status))
        elif primary.status == mirror.status and primary.status >= 300:
            comparison.add_unvalued(agreed=True)  # two equal refusals (both 400) agree
        elif mirror.status >= 300:  # the candidate failed or refused what the baseline answered
            comparison.add_errors(candidate=True)
        elif primary.status >= 300:  # the candidate answered what the baseline refused
            comparison.add_unvalued(agreed=False)
        elif primary.oversized or mirror.oversized:
            pair.oversized += 1
        else:
            self._queue(key[2], pair, primary, mirror)

    def _queue(self, request_id: str, pair: PairStats, primary: Pending, mirror: Pending) -> None:
        """Two answered requests: queue their values (or hashes) for the pair's batched comparison."""
        baseline, candidate = primary.answer(), mirror.answer()
        if baseline is None or candidate is None:
            baseline, candidate = primary.hashed(), mirror.hashed()
            if baseline is None or candidate is None:
                pair.blind += 1
                return
            pair.hashed += 1
        else:
            self._queued_bytes += answer_bytes(baseline, primary.body) + answer_bytes(candidate, mirror.body)
        pair.queue.append((request_id, baseline, candidate))

    def _compare(self, pair_key: tuple[str, str, str, str], pair: PairStats) -> None:
        """Compare a pair's queued answers, one :meth:`Comparison.update` per group of alike answers."""
        project, model = pair_key[0], pair_key[1]
        groups: dict[tuple[Any, ...], list[tuple[str, Answer, Answer]]] = {}
        for item in pair.queue:
            groups.setdefault(_signature(item[1], item[2]), []).append(item)
        pair.queue = []
        for signature, items in groups.items():
            if not signature[0]:  # the two answers have different numbers of rows: they disagree
                pair.comparison.add_unvalued(len(items), agreed=False)
                continue
            try:
                _update(pair.comparison, items)
            except (ValueError, TypeError) as exc:  # answers of types that cannot be compared
                pair.incomparable += len(items)
                pair.comparison.add_unvalued(len(items), agreed=False)
                log.debug("online analysis: %s/%s answers not comparable: %r", project, model, exc)

    # -- the reading thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Read the source in a background thread (idempotent)."""
        if self.source is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="modelyard-analysis", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop reading; returns once the thread ended (or ``timeout_s`` passed)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            wake = self._wake
            if wake is not None:  # cut a back-off short
                with contextlib.suppress(RuntimeError):  # its loop already closed
                    wake[0].call_soon_threadsafe(wake[1].set)
            thread.join(timeout_s)
        self.problem = self.problem or "stopped"

    def _run(self) -> None:
        asyncio.run(self._read_loop())

    async def _read_loop(self) -> None:
        assert self.source is not None
        backoff, stopping = 0.1, asyncio.Event()
        self._wake = (asyncio.get_running_loop(), stopping)
        try:
            while not self._stop.is_set():
                try:
                    lines = await self.source.read(READ_BATCH, READ_WAIT_S)
                except Exception as exc:  # any failure to read is reported, then retried
                    self._read_failed(exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff, self.problem = 0.1, None
                try:
                    self.feed(lines)  # also when empty: evictions go on while the log is quiet
                except Exception:  # a bug must not end the analysis: say so, keep reading
                    log.exception("online analysis: %d records could not be analysed", len(lines))
                    self.malformed += len(lines)
        finally:
            await self.source.close()
            self.problem = "stopped"

    def _read_failed(self, exc: Exception) -> None:
        self.read_failures += 1
        if isinstance(exc, FileNotFoundError):  # no gateway has written it yet: not alarming
            problem, level = f"no inference log at {exc.filename} yet", logging.INFO
        else:
            name = self.source.name if self.source else ""
            problem, level = f"cannot read the {name} log: {type(exc).__name__}: {exc}", logging.WARNING
        if problem != self.problem:
            log.log(level, "online analysis: %s", problem)
        self.problem = problem


def _policy_of(base: Policy, wanted: ComparePolicy) -> Policy:
    """``base`` with ``wanted``'s tolerances, output kinds and agreement gate."""
    return parse_policy(
        {
            **base.model_dump(),
            "abs_tol": wanted.abs_tol,
            "rel_tol": wanted.rel_tol,
            "outputs": dict(wanted.outputs),
            "min_agreement": wanted.min_agreement,
        },
        "compare",
    )


def _compares(policy: Policy) -> tuple[Any, ...]:
    """What decides whether two answers agree (the rest of a policy only judges the counts)."""
    return (policy.abs_tol, policy.rel_tol, sorted(policy.outputs.items()))


def _signature(baseline: Answer, candidate: Answer) -> tuple[Any, ...]:
    """Answers with the same signature stack into one batch: same outputs, dtypes and row shapes."""
    same_rows = rows_of(baseline) == rows_of(candidate) and all(
        array.shape[0] == rows_of(baseline) for array in (*baseline.values(), *candidate.values())
    )
    return (
        same_rows,
        tuple((name, array.dtype.kind, array.shape[1:]) for name, array in baseline.items()),
        tuple((name, array.dtype.kind, array.shape[1:]) for name, array in candidate.items()),
    )


def _update(comparison: Comparison, items: list[tuple[str, Answer, Answer]]) -> np.ndarray:
    """Feed a group of alike answers to ``comparison`` as one batch, counted per answer (an answer
    of several rows agrees when all its rows do); returns each answer's agreement."""
    rows = [rows_of(baseline) for _, baseline, _ in items]
    keys = [request_id for (request_id, _, _), n in zip(items, rows, strict=True) for _ in range(n)]
    if len(items) == 1:
        baseline, candidate = items[0][1], items[0][2]
    else:
        baseline = {name: np.concatenate([item[1][name] for item in items]) for name in items[0][1]}
        candidate = {name: np.concatenate([item[2][name] for item in items]) for name in items[0][2]}
    return comparison.update(baseline, candidate, keys=keys, answers=rows)


def _parse(record: Any, now: float, max_body: int) -> tuple[Key, Pending, bool, str | None]:
    """A record's key, answer, role (mirrored or not) and replica; raises one of MALFORMED when it
    is not an inference record, before anything was counted."""
    project, model, version = record["project"], record["model"], record["version"]
    if not (isinstance(project, str) and isinstance(model, str) and isinstance(version, str)):
        raise TypeError("project, model and version must be strings")
    entry = Pending(
        version, int(record["status"]), float(record["latency_ms"]), str(record.get("protocol") or "v2"),
        _text(record.get("response_hash")), _text(record.get("response_body")), now, max_body,
    )  # fmt: skip
    key = (project, model, str(record["request_id"]), _text(record.get("request_hash")))
    replica = record.get("replica")
    return key, entry, record["role"] == "mirror", str(replica) if replica else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
