"""``DeployService``: the deploy plane's transport-free core (the REST API and the CLI sit on it).

It holds the history (``DeployStore``), the routing table (``RouteStore``) and a ``DeployTarget``,
and it runs one apply at a time: ``diff`` plans a file against the live state (the routing table and
what the target runs, with the last applied file for the rest: ``deploy/live.py``), ``apply``
records a running apply, carries that plan out (``deploy/apply.py``) and records the outcome,
``rollback`` applies an earlier record's file again. Every file it is given passes its
``DeployPolicy`` first (``deploy/policy.py``: no local paths, no interpreter-control variables unless
allowed), so a refused file is never planned, started or recorded; so does what the target cannot
carry out (a ``LimitedTarget``'s refusals: the Kubernetes target has no ``replica_gate``). A
version with a ``rollout`` is handed to ``rollouts`` (the control plane's rollout controller)
instead of getting its weight at once. A target that gates updates replica by replica
(``GateReporter``) has its readings in ``status`` and, with each apply's verdicts, in the history.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from modelyard.deploy.apply import ApplyResult, Rollouts, RoutingAPI, apply_file, runtime_spec
from modelyard.deploy.backend import DeployTarget, VersionKey
from modelyard.deploy.diff import DRIFT_HEADING, Plan, render_plan
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.live import live_plan, running_versions
from modelyard.deploy.policy import DeployPolicy
from modelyard.deploy.spec import DeployFile, VersionSpec
from modelyard.deploy.state import ApplyRecord, ApplyStatus, DeployStore
from modelyard.deploy.targets.replica_gate import GateReport, GateReporter
from modelyard.errors import Conflict, ModelyardError

__all__ = ["ApplyOutcome", "DeployService", "LimitedTarget", "UsageRecorder"]

log = logging.getLogger("modelyard.deploy")
Usages = dict[str, list[Any]]  # consumer ("deployment/p/m/v") -> [registry model name, version]
Problems = list[tuple[tuple[str | int, ...], str]]  # (where in the file, why), as DeployPolicy's
_GATE_HISTORY = 50  # applies read back for the last replica-gate verdicts after a restart


class UsageRecorder(Protocol):
    """Tells the registry which versions deployments use, so it refuses to delete them."""

    def record(self, desired: DeployFile, previous: Usages) -> Usages:
        """Mark the versions ``desired`` uses, unmark those of ``previous`` it no longer does;
        returns the new usages (kept with the apply, for the next one to compare)."""


@runtime_checkable
class LimitedTarget(Protocol):
    """A target that cannot carry out everything a valid deploy file may ask (``KubernetesTarget``)."""

    def refused_fields(self, desired: DeployFile) -> Problems:
        """Every field of ``desired`` this target cannot carry out, with why and what to use instead."""
        ...


@dataclasses.dataclass(frozen=True)
class _TargetPolicy(DeployPolicy):
    """The control plane's policy and its target's limits, checked together on every file: a
    refusal names its line and field like the policy's (``deploy/file.py``), and nothing starts."""

    target: LimitedTarget | None = None

    @classmethod
    def of(cls, policy: DeployPolicy, target: LimitedTarget) -> _TargetPolicy:
        allowed = {field.name: getattr(policy, field.name) for field in dataclasses.fields(DeployPolicy)}
        return cls(**allowed, target=target)

    def problems(self, desired: DeployFile) -> Problems:
        found = super().problems(desired)
        return found if self.target is None else [*found, *self.target.refused_fields(desired)]


@dataclasses.dataclass(frozen=True)
class ApplyOutcome:
    record: ApplyRecord
    result: ApplyResult
    log: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "apply": self.record.to_dict(file_text=False),
            "ok": self.result.ok,
            "error": self.result.error,
            "summary": self.result.plan.summary,
            "drift": [str(item) for item in self.result.plan.drift],
            "log": self.log,
        }


class DeployService:
    """Diff, apply, status, history and rollback over one store, routing table and target.
    ``policy``: what a file may ask for (default: the strict one, as ``ControlSettings`` defaults);
    ``rollouts``: who runs the versions that carry a ``rollout`` (without it they cannot apply)."""

    def __init__(
        self,
        store: DeployStore,
        routes: RoutingAPI,
        target: DeployTarget,
        usage: UsageRecorder | None = None,
        policy: DeployPolicy | None = None,
        rollouts: Rollouts | None = None,
    ) -> None:
        self.store = store
        self.rollouts = rollouts
        self.routes = routes
        self.target = target
        self.usage = usage
        self.policy = policy or DeployPolicy()
        if isinstance(target, LimitedTarget):
            self.policy = _TargetPolicy.of(self.policy, target)
        self._verdicts: dict[VersionKey, dict[str, Any]] | None = None  # from the history, read once
        # The database refuses a second running apply across processes; this lock keeps two
        # requests of the same control plane from even trying at once.
        self._lock = threading.Lock()

    def current_file(self) -> DeployFile:
        current = self.store.current()
        return load_deploy_file(current.file_text, f"apply #{current.id}") if current else DeployFile()

    def plan(self, desired: DeployFile) -> Plan:
        """The plan for ``desired`` against what runs now (its ``drift``: what changed live)."""
        running = running_versions(self.target.status())
        return live_plan(desired, self.current_file(), self.routes, running)

    def diff(self, text: str, source: str = "<deploy file>") -> tuple[Plan, str]:
        """The plan for ``text`` against the live state, and its text."""
        plan = self.plan(load_deploy_file(text, source, policy=self.policy))
        return plan, render_plan(plan)

    def apply(self, text: str, *, user: str = "", source: str = "", timeout_s: float = 300.0) -> ApplyOutcome:
        """Validate, record, carry out and record the result; one apply at a time (Conflict)."""
        # A bad or refused file is never recorded, and nothing of it starts.
        desired = load_deploy_file(text, source or "<deploy file>", policy=self.policy)
        if not self._lock.acquire(blocking=False):
            raise Conflict("another apply is running on this control plane", field="apply")
        try:
            plan = self.plan(desired)
            drift = [str(item) for item in plan.drift]
            record = self.store.begin(
                text, user=user, source=source, plan={"summary": plan.summary, "drift": drift}
            )
            log = [DRIFT_HEADING, *(f"  {item}" for item in drift)] if drift else []
            gates = self._live_gates()
            try:
                # The live plan says what runs; the empty file stands for "no other current".
                result = apply_file(
                    desired, DeployFile(), self.target, self.routes,
                    plan=plan, progress=log.append, timeout_s=timeout_s,
                    rollouts=self.rollouts, user=user,
                )  # fmt: skip
            except Exception as exc:  # a bug or a lost database: still close the record
                self.store.finish(record.id, status="failed", message=f"{type(exc).__name__}: {exc}")
                raise
            read = [g for k, g in self._live_gates().items() if g is not gates.get(k) and not g.watching]
            return ApplyOutcome(self._finish(record, desired, plan, result, read), result, log)
        finally:
            self._lock.release()

    def _finish(
        self,
        record: ApplyRecord,
        desired: DeployFile,
        plan: Plan,
        result: ApplyResult,
        gates: list[GateReport],
    ) -> ApplyRecord:
        """Close the record: the plan's summary, every step, the verdicts of the replica gates the
        apply passed through (pass or not), and (applied) the registry usages."""
        summary: dict[str, Any] = {
            "summary": plan.summary,
            "drift": [str(item) for item in plan.drift],
            **result.summary(),
        }
        if gates:
            summary["replica_gates"] = [gate.to_dict() for gate in gates]
            self._recorded_gates().update((gate.key, gate.to_dict()) for gate in gates)
        if result.ok and self.usage is not None:
            previous = self.store.current()
            try:
                summary["usages"] = self.usage.record(
                    desired, dict(previous.plan.get("usages", {})) if previous else {}
                )
            except Exception as exc:  # the apply happened; a registry hiccup must not leave it "running"
                log.warning("could not record which registry versions apply #%d uses: %s", record.id, exc)
                summary["usages_error"] = f"{type(exc).__name__}: {exc}"
        status: ApplyStatus = "applied" if result.ok else "failed"
        return self.store.finish(record.id, status=status, message=result.error or "", plan=summary)

    def restore(self, progress: Callable[[str], None], *, timeout_s: float = 300.0) -> bool:
        """Start the replicas of the last applied file again, for a target whose replicas stopped
        with its control plane (the local backend's, under ``modelyard up``); whether all came back.

        Only replicas: the routing table and the rollouts are in the database already, and nothing
        is recorded in the history. The versions with the most traffic start first. A file this
        control plane's policy now refuses is not restored; a version that does not come up is
        reported through ``progress`` and the others still start."""
        current = self.store.current()
        if current is None:
            return True
        with self._lock:
            try:
                desired = load_deploy_file(current.file_text, f"apply #{current.id}", policy=self.policy)
            except ModelyardError as exc:
                progress(f"apply #{current.id} not restored: {exc.message}")
                return False
            progress(f"restoring the replicas of apply #{current.id} ({current.source or 'deploy file'})")
            restored = True
            for deployment in desired.deployments:
                for version in sorted(deployment.versions, key=lambda v: -v.spec.weight):
                    key = (deployment.project, deployment.model, version.version)
                    restored &= self._restore_version(key, version.spec, progress, timeout_s)
            return restored

    def _restore_version(
        self, key: VersionKey, spec: VersionSpec, progress: Callable[[str], None], timeout_s: float
    ) -> bool:
        try:
            self.target.ensure(key, runtime_spec(spec), timeout_s=timeout_s)
        except Exception as exc:  # reported; the other versions may still come back
            detail = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            progress(f"  {'/'.join(key)} FAILED: {detail}")
            return False
        progress(f"  {'/'.join(key)}: {spec.min_replicas} replica(s) ready")
        return True

    def rollback(self, apply_id: int, *, user: str = "") -> ApplyOutcome:
        """Apply the file of an earlier apply again (recorded as a new apply)."""
        earlier = self.store.get(apply_id)
        return self.apply(earlier.file_text, user=user, source=f"rollback to #{earlier.id}")

    def status(self) -> dict[str, Any]:
        """The last applied record, every replica the target runs and, for the versions gated
        replica by replica, the newest reading of each gate (``replica_gates``)."""
        current = self.store.current()
        running = self.store.running()
        replicas = self.target.status()
        return {
            "current": current.to_dict(file_text=False) if current else None,
            "running": running.to_dict(file_text=False) if running else None,
            "replicas": [dataclasses.asdict(replica) for replica in replicas],
            "replica_gates": self._gate_status({(r.project, r.model, r.version) for r in replicas}),
        }

    def _gate_status(self, runs: set[VersionKey]) -> list[dict[str, Any]]:
        """Each version's newest gate reading: the target's (a watch in progress: its figures so far
        and time left; or a verdict), else, for a version that runs, the last verdict in the history
        (the target's readings are gone with the process that ran them)."""
        found = {key: gate for key, gate in self._recorded_gates().items() if key in runs}
        found |= {key: gate.to_dict() for key, gate in self._live_gates().items()}
        return [found[key] for key in sorted(found)]

    def _live_gates(self) -> dict[VersionKey, GateReport]:
        target = self.target
        return {gate.key: gate for gate in target.replica_gates()} if isinstance(target, GateReporter) else {}

    def _recorded_gates(self) -> dict[VersionKey, dict[str, Any]]:
        """The last verdict of each version in the recent history, read once, then kept up to date."""
        if self._verdicts is None:
            verdicts: dict[VersionKey, dict[str, Any]] = {}
            for record in reversed(self.store.history(limit=_GATE_HISTORY)):
                for gate in record.plan.get("replica_gates") or []:
                    verdicts[(gate["project"], gate["model"], gate["version"])] = gate
            self._verdicts = verdicts
        return self._verdicts

    def history(self, limit: int = 50, before: int | None = None) -> list[ApplyRecord]:
        return self.store.history(limit=limit, before=before)
