"""Rollout test helpers: a fake clock, a stand-in :class:`Evidence` the test feeds, and a world
(a migrated database, its routing table with mail/spam logged in full, a controller, the last
applied file) to run the state machine in."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from modelyard.control.db import open_migrated
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.spec import Deployment
from modelyard.rollout import schema as s
from modelyard.rollout.controller import Controller
from modelyard.rollout.store import RolloutRecord, RolloutStore
from modelyard.routing.store import RouteStore
from modelyard.routing.table import VersionRoute
from modelyard.validation.evidence import LATENCY_BUCKETS_MS, ComparePolicy, Evidence, VersionStats

P, M = "mail", "spam"


class FakeClock:
    """``clock()`` is now; ``advance(seconds)`` moves it on."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _bucket(latency_ms: float) -> int:
    above = (i for i, bound in enumerate(LATENCY_BUCKETS_MS) if latency_ms <= bound)
    return next(above, len(LATENCY_BUCKETS_MS))


class FakeEvidence:
    """Cumulative figures per version that a test grows, as the online analysis would."""

    def __init__(self) -> None:
        self.versions: dict[str, VersionStats] = {}
        self.ok = True
        self.baselines: set[str | None] = set()  # the baselines the controller asked figures for
        self.policies: dict[tuple[str, str], ComparePolicy] = {}  # how each route is compared now
        self.calls: list[str] = []  # "compare_with" and "stats", in the order the controller made them

    def stats(self, project: str, model: str, baseline: str | None = None) -> Mapping[str, VersionStats]:
        self.baselines.add(baseline)
        self.calls.append("stats")
        return dict(self.versions)

    def compare_with(self, project: str, model: str, policy: ComparePolicy) -> None:
        self.policies[(project, model)] = policy
        self.calls.append("compare_with")

    def healthy(self) -> bool:
        return self.ok

    def add(
        self,
        version: str,
        *,
        requests: int = 0,
        errors: int = 0,
        latency_ms: float = 5.0,
        mirrored: int = 0,
        mirror_errors: int = 0,
        compared: int = 0,
        agreed: int | None = None,
    ) -> None:
        """``requests`` primary answers (``errors`` of them failed) at ``latency_ms``; ``mirrored``
        copies at the same latency; ``compared`` answers, ``agreed`` of them (default: all)."""
        old = self.versions.get(version, VersionStats())
        latency = list(old.latency_counts)
        latency[_bucket(latency_ms)] += requests
        mirror_latency = list(old.mirror_latency_counts)
        mirror_latency[_bucket(latency_ms)] += mirrored
        self.versions[version] = dataclasses.replace(
            old,
            requests=old.requests + requests,
            errors=old.errors + errors,
            latency_counts=tuple(latency),
            mirrored=old.mirrored + mirrored,
            mirror_errors=old.mirror_errors + mirror_errors,
            mirror_latency_counts=tuple(mirror_latency),
            compared=old.compared + compared,
            agreed=old.agreed + (compared if agreed is None else agreed),
        )


def deploy_file(rollout: str, *, baseline_weight: int = 100) -> str:
    """A deploy file: v1 serving, v2 rolling out from it with ``rollout`` (a YAML flow mapping)."""
    return (
        "deployments:\n"
        f"- project: {P}\n  model: {M}\n  versions:\n"
        f"  - version: v1\n    spec: {{uri: spam/1, weight: {baseline_weight}}}\n"
        f"  - version: v2\n    spec:\n      uri: spam/2\n      rollout: {rollout}\n"
    )


CANARY = (
    "{baseline: v1, steps: [{mirror: 1.0, for: 10s}, {weight: 5, for: 10s}, {weight: 25, for: 10s},"
    " {weight: 50, for: 10s}], gates: {min_requests: 100, max_error_rate: 0.01, max_p99_ratio: 1.5,"
    " min_agreement: 0.98}}"
)


def deployment(text: str) -> Deployment:
    return load_deploy_file(text, "deploy.yaml").deployments[0]


def rollout_values(model: str = M, at: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> dict[str, object]:
    """The columns of a new running rollout of ``mail/<model>`` (for ``RolloutStore.create``)."""
    rollout = deployment(deploy_file(CANARY)).versions[1].spec.rollout
    return {
        "project": P, "model": model, "candidate": "v2", "baseline": "v1", "fingerprint": "f" * 64,
        "spec": rollout, "baseline_weight": 100, "state": s.RUNNING, "step": 0,
        "step_started_at": at, "snapshot": None, "blind_since": None,
    }  # fmt: skip


def log_in_full(routes: RouteStore) -> None:
    """Route mail/spam to v1 with answers logged in full, as a rollout gating on agreement needs."""
    routes.set_weights(P, M, {"v1": 100})
    routes.set_options(P, M, log_payload="full")


@dataclasses.dataclass
class World:
    """A controller on a migrated SQLite database, with a fake clock and evidence; ``applied`` is
    the last applied file's deployment of each model (what a retry reads)."""

    engine: Engine
    routes: RouteStore
    store: RolloutStore
    evidence: FakeEvidence
    clock: FakeClock
    applied: dict[tuple[str, str], Deployment] = dataclasses.field(default_factory=dict)
    controller: Controller = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.controller = self.another_controller()

    @classmethod
    def make(cls, folder: Path) -> World:
        engine = open_migrated(f"sqlite:///{folder / 'control.db'}")
        routes = RouteStore(engine)
        log_in_full(routes)
        return cls(engine, routes, RolloutStore(engine), FakeEvidence(), FakeClock())

    def another_controller(self, evidence: Evidence | None = None) -> Controller:
        """A second control plane on the same database (after a restart)."""
        return Controller(
            self.store,
            self.routes,
            self.evidence if evidence is None else evidence,
            clock=self.clock,
            applied=lambda project, model: self.applied.get((project, model)),
        )

    def start(self, text: str = "") -> RolloutRecord:
        """What apply does: the file's weights, then the rollout."""
        found = deployment(text or deploy_file(CANARY))
        self.routes.set_weights(P, M, {v.version: v.spec.weight for v in found.versions})
        self.applied[(P, M)] = found
        self.controller.start(found, user="alice")
        latest = self.store.latest(P, M)
        assert latest is not None
        return latest

    def latest(self) -> RolloutRecord:
        latest = self.store.latest(P, M)
        assert latest is not None
        return latest

    def version(self, name: str) -> VersionRoute:
        found = self.routes.get(P, M).version(name)
        assert found is not None
        return found

    def traffic(self) -> tuple[int, int, float | None]:
        """(v1's weight, v2's weight, v2's mirrored fraction or None)."""
        v1, v2 = self.version("v1"), self.version("v2")
        return v1.weight, v2.weight, v2.mirror_fraction if v2.mirror else None

    def events(self) -> list[str]:
        return [event.event for event in self.store.events(self.latest().id)]

    def pass_step(self, *, mirror: bool, seconds: float = 10.0, latency_ms: float = 5.0) -> None:
        """Good evidence for a step, then its time, then a tick."""
        if mirror:
            self.evidence.add("v2", mirrored=200, compared=200, latency_ms=latency_ms)
        else:
            self.evidence.add("v2", requests=200, latency_ms=latency_ms)
        self.evidence.add("v1", requests=800, latency_ms=latency_ms)
        self.clock.advance(seconds)
        self.controller.tick()

    def close(self) -> None:
        self.engine.dispose()
