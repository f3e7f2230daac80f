"""Replica by replica: an update in place goes one gated replica first, then the rest or back.

The gate's reading (:func:`judge`) and watch (:class:`ReplicaWatch`) on figures made by hand; the
online analysis's per-replica figures from records; and the local target with real replicas and
a stand-in for the evidence (the figures a replica gets are given, not measured), alone and under
the deploy service, whose status and history show what the gate read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from modelyard.cli.deploy import _gate_lines
from modelyard.deploy.policy import DeployPolicy
from modelyard.deploy.service import DeployService
from modelyard.deploy.spec import ReplicaGate, VersionSpec
from modelyard.deploy.state import DeployStore
from modelyard.deploy.targets.local import LocalTarget
from modelyard.deploy.targets.replica_gate import (
    NO_EVIDENCE,
    GateFigures,
    GateReport,
    Reading,
    ReplicaWatch,
    judge,
)
from modelyard.errors import ModelNotReady
from modelyard.validation.evidence import LATENCY_BUCKETS_MS, P99_SAMPLES, VersionStats
from modelyard.validation.logread import open_source
from modelyard.validation.online import REPLICA_TTL_S, OnlineAnalysis
from tests.deploy.support import RecordingTarget
from tests.deploy.test_local import KEY, Setup, alive
from tests.gateway.support import GatewayWorld
from tests.support import linear_onnx

BUCKETS = len(LATENCY_BUCKETS_MS) + 1


def stats(requests: int, errors: int = 0, latency_ms: float = 10, slow: int = 0) -> VersionStats:
    """``requests`` answers, all in the latency bucket of ``latency_ms`` but ``slow`` of them at
    500 ms (a GC pause, a cold cache)."""
    counts = [0] * BUCKETS
    counts[LATENCY_BUCKETS_MS.index(latency_ms)] = requests - slow
    counts[LATENCY_BUCKETS_MS.index(500)] += slow
    return VersionStats(requests=requests, errors=errors, latency_counts=tuple(counts))


def gate(**fields: object) -> ReplicaGate:
    return ReplicaGate.model_validate({"for": "1s", "min_requests": 50, **fields})


# -- the reading ------------------------------------------------------------------------------


def test_the_gate_passes_fails_or_is_inconclusive_against_the_siblings() -> None:
    siblings = [stats(200, errors=2), stats(100, latency_ms=20)]  # pooled error rate 0.0067
    both = gate(max_error_rate=0.01, max_p99_ratio=1.5)
    assert judge(both, stats(100, errors=1, latency_ms=15), siblings).outcome == "pass"
    # Its siblings' errors are tolerated: 1.5 % is within 0.67 % + 1 %.
    assert judge(both, stats(200, errors=3), siblings).outcome == "pass"
    failed = judge(both, stats(100, errors=5), siblings)
    assert failed.outcome == "fail"
    assert "error rate 0.050 (siblings 0.007, at most +0.01)" in failed.detail
    slow = judge(both, stats(100, latency_ms=50), siblings)  # median of the siblings' p99: 15 ms
    assert slow == Reading("fail", slow.detail)
    assert "p99 50 ms (siblings 15 ms, ratio 3.33, at most 1.5)" in slow.detail
    few = judge(both, stats(49), siblings)
    assert few == Reading("inconclusive", "the new replica answered 49 of 50 requests")
    assert judge(both, None, siblings).outcome == "inconclusive"
    assert judge(gate(max_p99_ratio=2), stats(100), []).outcome == "inconclusive"  # nothing to compare


def test_one_slow_request_among_60_does_not_fail_a_good_replica() -> None:
    # Of 60 latencies the p99 is the slowest: 500 ms, 50x its siblings'. It is not read.
    siblings = [stats(200), stats(200)]
    p99 = gate(max_p99_ratio=1.5)
    few = judge(p99, stats(60, slow=1), siblings)
    assert few.outcome == "inconclusive"
    assert few.detail.startswith(f"a p99 needs {P99_SAMPLES} latencies: the new replica has 60; 60 requests")
    assert few.figures is not None
    assert (few.figures.p99_ms, few.figures.latencies, few.figures.siblings_p99_ms) == (None, 60, 10)
    # With enough latencies, the one slow request is no longer the p99: the good replica passes.
    enough = judge(p99, stats(150, slow=1), siblings)
    assert enough.outcome == "pass", enough.detail
    assert "p99 10 ms (siblings 10 ms, ratio 1.00, at most 1.5)" in enough.detail
    # Two slow requests in 150 (1.3 %) are the p99: then it is read, and it fails.
    assert judge(p99, stats(150, slow=2), siblings).outcome == "fail"


def test_siblings_with_too_few_latencies_are_left_out_of_the_median() -> None:
    # Three quiet siblings (50 answers, all at 2 ms) would pull the median down to 2 ms.
    quiet = [stats(50, latency_ms=2)] * 3
    reading = judge(gate(max_p99_ratio=1.5), stats(300), [stats(300), stats(300), *quiet])
    assert reading.outcome == "pass", reading.detail
    assert reading.figures is not None
    assert (reading.figures.siblings_p99_ms, reading.figures.siblings_with_p99) == (10, 2)
    alone = judge(gate(max_p99_ratio=1.5), stats(300), quiet)
    assert alone.outcome == "inconclusive"
    assert alone.detail.startswith(f"a p99 needs {P99_SAMPLES} latencies: no sibling has as many")


def test_a_p99_over_the_ratio_fails_at_the_end_not_before() -> None:
    three_times = judge(gate(max_p99_ratio=1.5), stats(150, latency_ms=30), [stats(150), stats(150)])
    assert three_times.outcome == "fail"
    assert "p99 30 ms (siblings 10 ms, ratio 3.00, at most 1.5)" in three_times.detail
    early = judge(gate(max_p99_ratio=1.5), stats(150, latency_ms=30), [stats(150)], ended=False)
    assert early.outcome == "inconclusive"
    assert early.detail.endswith("at most 1.5), judged at the end; 150 requests; error rate 0.000 "
                                 "(siblings 0.000, at most +0.01)")  # fmt: skip
    # Errors are not kept waiting: with the p99 pending, a high error rate fails at once.
    both = judge(gate(max_p99_ratio=1.5), stats(150, errors=30, latency_ms=30), [stats(150)], ended=False)
    assert both.outcome == "fail"
    assert both.detail.startswith("error rate 0.200")


class Figures:
    """Evidence given by hand: a function of how often it was read, per replica URL."""

    def __init__(self, figures: dict[str, list[VersionStats]], healthy: bool = True) -> None:
        self.figures = figures
        self.reads = 0
        self.ok = healthy

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, VersionStats]:
        read, self.reads = self.reads, self.reads + 1
        return {url: steps[min(read, len(steps) - 1)] for url, steps in self.figures.items()}

    def healthy(self) -> bool:
        return self.ok


def test_a_watch_reads_the_steps_own_evidence_and_fails_early() -> None:
    # Before the watch, the "new" URL already had 1000 errors: they are not the step's.
    history = {"new": [stats(1000, errors=1000), stats(1100, errors=1000)], "old": [stats(10), stats(110)]}
    watch = ReplicaWatch(Figures(history), KEY, gate(), tick_s=0.001)
    assert watch.run("new", ["old"], lambda: True, threading.Event()).outcome == "pass"

    bad = {"new": [stats(0), stats(100, errors=40)], "old": [stats(0), stats(100)]}
    forever = ReplicaWatch(Figures(bad), KEY, gate(**{"for": "1h"}), tick_s=0.001)
    reading = forever.run("new", ["old"], lambda: True, threading.Event())
    assert reading.outcome == "fail"  # at once, not after an hour
    assert "error rate 0.400" in reading.detail
    assert reading.figures is not None
    assert (reading.figures.requests, reading.figures.error_rate) == (100, 0.4)
    assert "failed its replica_gate" in reading.failure("2")

    quiet = ReplicaWatch(Figures({"new": [stats(0), stats(10)]}), KEY, gate(), tick_s=0.001)
    assert quiet.run("new", [], lambda: True, threading.Event()).outcome == "inconclusive"
    blind = ReplicaWatch(Figures(history, healthy=False), KEY, gate(), tick_s=0.001)
    assert "cannot read" in blind.run("new", ["old"], lambda: True, threading.Event()).detail
    gone = ReplicaWatch(Figures(history), KEY, gate(), tick_s=0.001)
    assert "stopped being ready" in gone.run("new", ["old"], lambda: False, threading.Event()).detail


def test_a_watch_reports_its_readings_while_it_runs_then_its_verdict() -> None:
    history = {
        "new": [stats(0), stats(40), stats(100, errors=1)],
        "old": [stats(0), stats(100), stats(200, latency_ms=20)],
    }
    reports: list[GateReport] = []
    ticks = itertools.count(0.0, 0.3)  # the watch's own clock: it ends at its 4th reading
    watch = ReplicaWatch(
        Figures(history), KEY, gate(max_p99_ratio=2), tick_s=0.001,
        clock=lambda: next(ticks), wall=lambda: 1000.0, report=reports.append,
    )  # fmt: skip
    reading = watch.run("new", ["old"], lambda: True, threading.Event(), replica="2")
    assert [r.state for r in reports] == ["watching"] * 4 + ["pass"]
    first, so_far, verdict = reports[0], reports[1], reports[-1]
    assert (first.replica, first.url, first.siblings, first.key) == ("2", "new", 1, KEY)
    assert first.to_dict(now=1000.25)["time_left_s"] == 0.75  # the watch is for 1 s
    assert so_far.detail == "the new replica answered 40 of 50 requests"
    assert so_far.to_dict()["figures"]["requests"] == 40
    assert verdict.detail == reading.detail
    assert reading.outcome == "pass"
    recorded = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))  # as the history stores it
    assert recorded["time_left_s"] is None
    assert recorded["gate"] == {"for": 1.0, "min_requests": 50, "max_error_rate": 0.01, "max_p99_ratio": 2}
    assert recorded["figures"] == {
        "requests": 100, "errors": 1, "error_rate": 0.01, "siblings_requests": 200,
        "siblings_error_rate": 0.0, "p99_ms": 10, "siblings_p99_ms": 20, "p99_ratio": 0.5,
        "latencies": 100, "siblings_with_p99": 1,
    }  # fmt: skip
    assert recorded["started_at"] == "1970-01-01T00:16:40+00:00"
    beyond = GateFigures(1, 0, 0.0, 1, 0.0, float("inf"), 10.0, float("inf"), 100, 1)
    assert beyond.to_dict()["p99_ms"] is None  # JSON has no infinity


def watched(
    new: list[VersionStats], old: list[VersionStats], readings: int, **fields: object
) -> tuple[Reading, list[GateReport]]:
    """A watch of ``new`` beside ``old`` (the figures of each reading, the last one repeated) whose
    clock ends it at its ``readings``-th reading; its verdict and reports."""
    reports: list[GateReport] = []
    ticks = itertools.count(0.0, 1.0 / readings)  # the watch is for 1 s
    watch = ReplicaWatch(
        Figures({"new": new, "old": old}), KEY, gate(**fields), tick_s=0.001,
        clock=lambda: next(ticks) + 1e-9, report=reports.append,
    )  # fmt: skip
    return watch.run("new", ["old"], lambda: True, threading.Event(), replica="2"), reports


def test_a_slow_replica_fails_at_the_watchs_end_and_a_slow_request_fails_none() -> None:
    old = [stats(0), stats(150), stats(300)]
    # One slow request among the first 60 would be the p99: by the end there are 200 latencies.
    good, reports = watched([stats(0), stats(60, slow=1), stats(200, slow=1)], old, 3, max_p99_ratio=1.5)
    assert good.outcome == "pass", good.detail
    assert [r.state for r in reports] == ["watching"] * 3 + ["pass"]
    assert reports[1].detail.startswith(f"a p99 needs {P99_SAMPLES} latencies: the new replica has 60")
    # Three times slower on enough latencies: watched to the end (a p99 is judged there), then failed.
    slow, reports = watched([stats(0), stats(150, latency_ms=30)], old, 3, max_p99_ratio=1.5)
    assert slow.outcome == "fail"
    assert "ratio 3.00, at most 1.5" in slow.detail
    assert [r.state for r in reports] == ["watching"] * 3 + ["fail"]
    assert reports[2].detail.startswith(
        "p99 30 ms (siblings 10 ms, ratio 3.00, at most 1.5), judged at the end"
    )


def test_a_p99_short_of_latencies_at_the_end_is_inconclusive_and_stops_the_update() -> None:
    # Enough requests for min_requests (50), too few for a p99: the gate never passes a latency it
    # could not read.
    reading, _ = watched([stats(0), stats(60, slow=1)], [stats(0), stats(300)], 2, max_p99_ratio=1.5)
    assert reading.outcome == "inconclusive"
    assert reading.failure("2") == (
        f"replica 2 was inconclusive on its replica_gate: a p99 needs {P99_SAMPLES} latencies: the new "
        "replica has 60; 60 requests; error rate 0.000 (siblings 0.000, at most +0.01); it was stopped, "
        "the old replicas go on"
    )
    # Without max_p99_ratio no latency is read: 60 requests suffice.
    assert watched([stats(0), stats(60, slow=1)], [stats(0), stats(300)], 2)[0].outcome == "pass"


# -- the online analysis --------------------------------------------------------------------------


def record(replica: str, status: int = 200, role: str = "primary", n: int = 0) -> bytes:
    return orjson.dumps({
        "project": "mail", "model": "spam", "version": "v1", "request_id": f"{replica}-{n}-{role}",
        "role": role, "status": status, "latency_ms": 12.0, "replica": replica,
    })  # fmt: skip


def test_the_analysis_counts_primary_answers_per_replica_and_forgets_old_replicas() -> None:
    now = [0.0]
    analysis = OnlineAnalysis(clock=lambda: now[0])
    analysis.feed([record("http://a", n=i) for i in range(3)] + [record("http://b", 503)])
    analysis.feed([record("http://a", role="mirror"), record("", n=9)])  # neither counts per replica
    figures = analysis.replica_stats("mail", "spam", "v1")
    assert {url: (f.requests, f.errors) for url, f in figures.items()} == {
        "http://a": (3, 0),
        "http://b": (1, 1),
    }
    assert figures["http://a"].latency_quantile(0.99) == 13  # 12 ms: the bucket (11.5, 13]
    assert analysis.replica_stats("mail", "spam", "v2") == {}
    now[0] = REPLICA_TTL_S - 1
    analysis.feed([record("http://b", n=1)])
    now[0] = REPLICA_TTL_S + 1
    analysis.feed([])
    assert set(analysis.replica_stats("mail", "spam", "v1")) == {"http://b"}


# -- the local target, real replicas ----------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Setup]:
    """As ``test_local.py``'s: a control plane, a gateway, a model and a target, closed after."""
    with GatewayWorld.context(tmp_path) as world:
        world.store.set_weights("mail", "spam", {"v1": 1})
        target = LocalTarget(world.control)
        try:
            created = Setup(world, target, linear_onnx(tmp_path / "spam.onnx"))
            with created.http:
                yield created
        finally:
            target.close()
    assert target.status() == []


class Given:
    """Evidence for the target: the replicas running before the update answer cleanly, any other
    (the new one) with ``error_share`` errors; 100 answers each per read."""

    def __init__(self, target: LocalTarget, old: set[str], error_share: float) -> None:
        self.target, self.old, self.error_share = target, old, error_share
        self.reads = 0
        self.running_during_watch: set[int] = set()

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, VersionStats]:
        self.reads += 1
        urls = {r.url for r in self.target.status() if r.url is not None}
        self.running_during_watch.add(len(urls))
        errors = 0 if self.error_share == 0 else int(100 * self.reads * self.error_share)
        return {url: stats(100 * self.reads, 0 if url in self.old else errors) for url in urls}

    def healthy(self) -> bool:
        return True


def gated(setup: Setup, max_batch_size: int) -> VersionSpec:
    return setup.spec(
        replicas=2,
        batching={"max_batch_size": max_batch_size},
        replica_gate={"for": "0.5s", "min_requests": 50, "max_error_rate": 0.05},
    )


@pytest.mark.slow
def test_a_good_replica_passes_its_gate_and_the_rest_follow(local: Setup) -> None:
    local.target.ensure(KEY, local.spec(replicas=2), timeout_s=60)
    old = {r.url: local.target.pid(KEY, r.replica) for r in local.replicas()}
    evidence = Given(local.target, set(old), error_share=0.0)
    local.target.use_replica_evidence(evidence)
    local.target.ensure(KEY, gated(local, 8), timeout_s=60)
    assert evidence.reads >= 2
    assert evidence.running_during_watch == {3}  # two old replicas and one new, never more
    new = local.replicas()
    assert [(r.replica, r.state) for r in new] == [("2", "ready"), ("3", "ready")]
    assert local.routed() == {r.url for r in new}
    assert not any(alive(pid) for pid in old.values() if pid is not None)
    assert local.predict() == 200


@pytest.mark.slow
def test_a_bad_replica_fails_its_gate_and_the_old_ones_go_on(local: Setup) -> None:
    local.target.ensure(KEY, local.spec(replicas=2), timeout_s=60)
    before = local.replicas()
    pids = {r.replica: local.target.pid(KEY, r.replica) for r in before}
    evidence = Given(local.target, {r.url for r in before if r.url}, error_share=0.2)
    local.target.use_replica_evidence(evidence)
    with pytest.raises(ModelNotReady) as caught:
        local.target.ensure(KEY, gated(local, 8), timeout_s=60)
    message = str(caught.value)
    assert "mail/spam/v1" in message, message
    assert "replica 2 failed its replica_gate: error rate 0.200" in message, message
    assert local.replicas() == before  # the new replica is gone, the old ones untouched
    assert {r.replica: local.target.pid(KEY, r.replica) for r in before} == pids
    assert local.routed() == {r.url for r in before}
    assert local.predict() == 200


@pytest.mark.slow
def test_a_gate_without_evidence_is_refused_before_anything_starts(local: Setup) -> None:
    # One replica has no siblings to be compared with: the update rolls over as without a gate.
    local.target.ensure(KEY, local.spec(replicas=1), timeout_s=60)
    local.target.ensure(KEY, gated(local, 8), timeout_s=60)
    before = local.replicas()
    assert [r.replica for r in before] == ["1", "2"]
    with pytest.raises(ModelNotReady, match="its replica_gate cannot be read"):
        local.target.ensure(KEY, gated(local, 16), timeout_s=60)
    assert NO_EVIDENCE.startswith("its replica_gate")
    assert local.replicas() == before


# -- under the deploy service: what the gate read, in status and in the history ----------------------


class Watched(Given):
    """``Given``, and the deploy status as it was on the watch's third reading (the figures of the
    second one reported by then)."""

    def __init__(
        self, target: LocalTarget, old: set[str], error_share: float, service: DeployService
    ) -> None:
        super().__init__(target, old, error_share)
        self.service = service
        self.status: dict[str, object] = {}

    def replica_stats(self, project: str, model: str, version: str) -> Mapping[str, VersionStats]:
        if self.reads == 2:
            self.status = self.service.status()
        return super().replica_stats(project, model, version)


def deploy_file(setup: Setup, max_batch_size: int, **spec: object) -> str:
    version = {
        "uri": str(setup.model),
        "replicas": 2,
        "weight": 1,
        "batching": {"max_batch_size": max_batch_size},
    }
    return yaml.safe_dump({"deployments": [
        {"project": "mail", "model": "spam", "versions": [{"version": "v1", "spec": {**version, **spec}}]}
    ]})  # fmt: skip


@pytest.mark.slow
def test_the_gates_figures_are_in_status_while_watched_and_in_the_history_pass_or_fail(local: Setup) -> None:
    gated = {"replica_gate": {"for": "2s", "min_requests": 50, "max_error_rate": 0.05}}
    with DeployStore.open(local.world.control) as store:
        service = DeployService(
            store, local.world.store, local.target, policy=DeployPolicy(allow_local_paths=True)
        )
        assert service.apply(deploy_file(local, 8)).result.ok
        assert service.status()["replica_gates"] == []  # nothing was gated: v1 was new
        old = {r.url for r in local.replicas() if r.url}
        local.target.use_replica_evidence(good := Watched(local.target, old, 0.0, service))
        passed = service.apply(deploy_file(local, 16, **gated))
        assert passed.result.ok, passed.result.error
        [watching] = good.status["replica_gates"]  # type: ignore[misc]
        assert (watching["state"], watching["replica"], watching["siblings"]) == ("watching", "2", 2)
        assert watching["figures"]["requests"] == 100
        assert 0 <= watching["time_left_s"] <= 2
        [verdict] = passed.record.plan["replica_gates"]
        assert (verdict["state"], verdict["replica"], verdict["figures"]["error_rate"]) == ("pass", "2", 0.0)
        assert verdict["figures"]["requests"] >= 50
        assert verdict["time_left_s"] is None
        assert service.status()["replica_gates"] == [verdict]

        old = {r.url for r in local.replicas() if r.url}
        local.target.use_replica_evidence(Given(local.target, old, error_share=0.2))
        failed = service.apply(deploy_file(local, 32, **gated))
        assert not failed.result.ok
        assert service.history()[0].status == "failed"
        [verdict] = service.history()[0].plan["replica_gates"]
        assert (verdict["state"], verdict["replica"], verdict["figures"]["error_rate"]) == ("fail", "4", 0.2)
        assert "error rate 0.200" in verdict["detail"]
        assert service.status()["replica_gates"] == [verdict]
        assert _gate_lines([verdict], "gates:") == [
            "gates:",
            f"  mail/spam v1: replica 4 against 2 old: fail at {verdict['read_at']}: {verdict['detail']}",
        ]

        # A control plane started again: its target read no gate, the history has the last verdict.
        again = RecordingTarget()
        again.running[KEY] = VersionSpec(uri="spam/1")
        assert DeployService(store, local.world.store, again).status()["replica_gates"] == [verdict]
        assert DeployService(store, local.world.store, RecordingTarget()).status()["replica_gates"] == []


# -- end to end: a real gateway, its real inference log, the real analysis ---------------------------

MODELS = Path(__file__).parents[1] / "e2e" / "rollout_models.py"  # Linear; Flaky fails 1 in 5


@pytest.mark.slow
def test_the_gate_reads_the_gateways_log_replica_by_replica(tmp_path: Path) -> None:
    with GatewayWorld.context(tmp_path) as world:
        world.store.set_weights("mail", "spam", {"v1": 1})
        gateway = world.gateway(refresh_interval_s=0.1)
        analysis = OnlineAnalysis(open_source(str(world.log_path), start="start"))
        analysis.start()
        target = LocalTarget(world.control)
        target.use_replica_evidence(analysis)
        traffic = Traffic(gateway.url)
        try:
            spec = {"replicas": 2, "weight": 1}
            gate = {"for": "3s", "min_requests": 20, "max_error_rate": 0.05}
            target.ensure(KEY, VersionSpec(uri=f"{MODELS}:Linear", **spec), timeout_s=60)  # type: ignore[arg-type]
            before = target.status()
            with traffic:
                flaky = VersionSpec.model_validate({"uri": f"{MODELS}:Flaky", **spec, "replica_gate": gate})
                with pytest.raises(
                    ModelNotReady, match=r"replica 2 failed its replica_gate: error rate 0\.[12]"
                ):
                    target.ensure(KEY, flaky, timeout_s=60)
                assert target.status() == before  # the old replicas serve on, untouched
                good = VersionSpec.model_validate({"uri": f"{MODELS}:Linear", **spec, "replica_gate": gate,
                                                   "batching": {"max_batch_size": 4}})  # fmt: skip
                target.ensure(KEY, good, timeout_s=60)
            assert [r.replica for r in target.status()] == ["3", "4"]
            figures = analysis.replica_stats(*KEY)
            assert {r.url for r in before} <= set(figures)  # the log's replica URLs are the target's
        finally:
            target.close()
            analysis.stop()
    assert traffic.sent > 50


class Traffic:
    """A thread posting predictions through the gateway (retries on) while the block runs."""

    def __init__(self, url: str) -> None:
        self.url, self.sent = url, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drive)

    def _drive(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as http:
            while not self.stop.wait(0.01):
                with contextlib.suppress(httpx.HTTPError):
                    http.post("/projects/mail/models/spam:predict", json={"instances": [[1.0, 2.0, 3.0]]})
                self.sent += 1

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)
