"""Carrying a plan out: replicas first, traffic second, removals last — and stop at the first failure.

Per project/model, in the plan's order (``deploy/diff.py``):

1. every ADD and UPDATE version is brought up by the target (``DeployTarget.ensure`` returns only
   once all its replicas are ready; an update is rolling, so the old replicas serve meanwhile);
2. the model's routing is made to match the file: weights and mirrors (versions left out get weight
   0 and no mirror) — only now can traffic reach a new version;
3. DELETE versions leave the routing table, then their replicas are drained and stopped.

A version with a ``rollout`` is started like any other, but step 2 gives it no traffic: the file's
weights go to the other versions (its baseline keeps its own), and the rollout controller
(:class:`Rollouts`) is asked to move traffic step by step from there. Applying the same file again
leaves a rollout of the same spec alone, running or ended; a file that changes the candidate or its
rollout, or drops it, supersedes it first.

If step 1 fails for a version, nothing more is done: that model's routing is untouched, so no traffic
moves to the broken version (an update that failed left the old replicas serving), and the models
after it are not started. Models before it are fully applied. Routing is compared before it is
written, so applying the same file twice changes nothing the second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

from modelyard.deploy.backend import DeployTarget
from modelyard.deploy.diff import Action, ModelPlan, Plan, VersionChange, diff
from modelyard.deploy.spec import DeployFile, Deployment, VersionSpec
from modelyard.errors import ModelyardError, NotFound
from modelyard.routing.table import ModelRoute

__all__ = [
    "TRAFFIC_FIELDS",
    "ApplyResult",
    "Rollouts",
    "RoutingAPI",
    "StepResult",
    "apply_file",
    "runtime_spec",
]

Progress = Callable[[str], None]
# Fields that only steer traffic: changing them moves weights in the gateway, never restarts replicas.
TRAFFIC_FIELDS = frozenset({"weight", "mirror", "rollout"})


def runtime_spec(spec: VersionSpec) -> VersionSpec:
    """``spec`` without its traffic fields: what a target compares to decide on a rolling update."""
    return spec.model_copy(update={"weight": 0, "mirror": False, "rollout": None})


class RoutingAPI(Protocol):
    """The routes API calls apply makes (``RouteStore`` and ``RouteClient`` both have them)."""

    def get(self, project: str, model: str) -> ModelRoute: ...

    def set_weights(
        self, project: str, model: str, weights: Mapping[str, int], *, replace: bool = True
    ) -> ModelRoute: ...

    def set_mirror(self, project: str, model: str, version: str, fraction: float = 1.0) -> ModelRoute: ...

    def clear_mirror(self, project: str, model: str, version: str) -> ModelRoute: ...

    def remove_version(self, project: str, model: str, version: str) -> ModelRoute: ...

    def delete(self, project: str, model: str) -> None: ...


class Rollouts(Protocol):
    """What apply asks of the rollout controller (``rollout/controller.py`` implements it)."""

    def cannot_run(self, deployment: Deployment) -> str | None:
        """Why this control plane cannot roll the deployment's candidate out (no online analysis,
        a route that logs no answers to compare), or None."""

    def steering(self, deployment: Deployment) -> bool:
        """Whether the model's newest rollout is of the deployment's candidate with this very spec
        (running or ended): apply then leaves the traffic of the candidate and its baseline to it."""

    def start(self, deployment: Deployment, *, user: str) -> str:
        """Record a new rollout of the deployment's candidate (the file's traffic is in place); a
        line for the log."""

    def stop(self, project: str, model: str, *, user: str, reason: str) -> str | None:
        """End the model's running rollout, if any, leaving traffic as it is; a line for the log."""


@dataclasses.dataclass(frozen=True)
class StepResult:
    project: str
    model: str
    version: str
    action: str
    outcome: str  # "done", "failed", "skipped"
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    steps: list[StepResult]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> dict[str, object]:
        """JSON for the apply history: the outcome of every step."""
        return {
            "ok": self.ok,
            "error": self.error,
            "steps": [dataclasses.asdict(step) for step in self.steps],
        }


def apply_file(
    desired: DeployFile,
    current: DeployFile,
    target: DeployTarget,
    routes: RoutingAPI,
    *,
    plan: Plan | None = None,
    progress: Progress = lambda line: None,
    timeout_s: float = 300.0,
    rollouts: Rollouts | None = None,
    user: str = "",
) -> ApplyResult:
    """Make ``target`` and the routing table match ``desired``; ``current`` is what runs now. The
    plan is ``diff(desired, current)`` unless given (the control plane's, computed against the live
    routing table and target: ``deploy/live.py``). ``rollouts``: the controller that versions with
    a ``rollout`` are handed to (without one, such a version fails its step); ``user``: who applies."""
    plan = plan if plan is not None else diff(desired, current)
    wanted = {deployment.key: deployment for deployment in desired.deployments}
    steps: list[StepResult] = []
    traffic = _Traffic(routes, rollouts, user, progress)
    for model in plan.models:
        progress(f"PROJECT: {model.project} MODEL: {model.model}")
        error = _apply_model(model, wanted.get(model.key), target, traffic, steps, timeout_s)
        if error is not None:
            _skip_rest(plan, model, steps)
            return ApplyResult(plan, steps, error)
    return ApplyResult(plan, steps)


@dataclasses.dataclass(frozen=True)
class _Traffic:
    """Where apply writes traffic: the routing table, and the rollout controller for a version
    with a ``rollout``."""

    routes: RoutingAPI
    rollouts: Rollouts | None
    user: str
    progress: Progress


def _apply_model(
    model: ModelPlan,
    deployment: Deployment | None,
    target: DeployTarget,
    traffic: _Traffic,
    steps: list[StepResult],
    timeout_s: float,
) -> str | None:
    routes, progress = traffic.routes, traffic.progress
    refused = _rollout_refused(deployment, traffic.rollouts)
    if refused is not None:  # before anything starts: a rollout nobody can run must not begin
        version, detail = refused
        steps.append(StepResult(model.project, model.model, version, "ROLLOUT", "failed", detail))
        progress(f"  ROLLOUT {version} FAILED: {detail}")
        return f"{model.project}/{model.model} version {version}: {detail}"
    rolling = [v for v in model.versions if v.action in (Action.ADD, Action.UPDATE)]
    for index, change in enumerate(rolling, 1):
        progress(f"  {change.action.value} ({index}/{len(rolling)}) {change.version} ...")
        assert change.desired is not None
        if change.action is Action.UPDATE and all(
            c.path.split(".")[0] in TRAFFIC_FIELDS for c in change.changes
        ):
            progress("    traffic only: no replica restarts")
            steps.append(_step(model, change, "done", "traffic only"))
            continue
        try:
            key = (model.project, model.model, change.version)
            target.ensure(key, runtime_spec(change.desired), timeout_s=timeout_s)
        except Exception as exc:  # any failure stops the apply; the message goes to the history
            detail = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            steps.append(_step(model, change, "failed", detail))
            progress(f"  {change.action.value} {change.version} FAILED: {detail}")
            return f"{model.project}/{model.model} version {change.version}: {detail}"
        steps.append(_step(model, change, "done"))
    _route(model, deployment, traffic)
    for change in (v for v in model.versions if v.action is Action.DELETE):
        progress(f"  DELETE {change.version} ...")
        _forget_version(model, change.version, deployment, routes)
        target.remove((model.project, model.model, change.version))
        steps.append(_step(model, change, "done"))
    for change in (v for v in model.versions if v.action is Action.RETAIN):
        steps.append(_step(model, change, "done", "unchanged"))
    return None


def _rollout_refused(deployment: Deployment | None, rollouts: Rollouts | None) -> tuple[str, str] | None:
    """``(version, why)`` when the file rolls a version out and this control plane cannot."""
    candidate = deployment.rollout_version if deployment is not None else None
    if deployment is None or candidate is None:
        return None
    if rollouts is None:
        return candidate.version, "this control plane runs no rollout controller"
    why = rollouts.cannot_run(deployment)
    return None if why is None else (candidate.version, why)


def _route(model: ModelPlan, deployment: Deployment | None, traffic: _Traffic) -> None:
    """Make the model's weights and mirrors what the file says (no write when they already are),
    but for the versions a rollout steers; start a new rollout once the file's traffic is in place."""
    routes, progress, rollouts = traffic.routes, traffic.progress, traffic.rollouts
    candidate = deployment.rollout_version if deployment is not None else None
    keep: frozenset[str] = frozenset()  # versions whose traffic the model's rollout moves
    if (
        deployment is not None
        and candidate is not None
        and rollouts is not None
        and rollouts.steering(deployment)
    ):
        keep = deployment.steered
    if not keep and rollouts is not None:  # a rollout this file no longer asks for ends first
        line = rollouts.stop(model.project, model.model, user=traffic.user, reason="superseded by an apply")
        if line:
            progress(f"  {line}")
    if deployment is None:
        return  # the whole model goes: _forget_version removes the route with its last version
    routed = _write_weights(model, deployment, keep, routes, progress)
    mirrors = {v.version: v.spec.mirror_fraction for v in deployment.versions if v.version not in keep}
    # A version the file leaves out loses its mirror as it loses its weight (``route mirror`` may
    # have added one live), so the route ends up as the file says.
    for version in (v.version for v in routed.versions if v.version not in mirrors and v.version not in keep):
        mirrors[version] = None
    for version, fraction in mirrors.items():
        mirrored = _mirror_of(routed, version)
        if fraction is not None and mirrored != fraction:
            routes.set_mirror(model.project, model.model, version, fraction)
        elif fraction is None and mirrored is not None:
            routes.clear_mirror(model.project, model.model, version)
    if candidate is not None and rollouts is not None and not keep:
        progress(f"  {rollouts.start(deployment, user=traffic.user)}")


def _write_weights(
    model: ModelPlan, deployment: Deployment, keep: frozenset[str], routes: RoutingAPI, progress: Progress
) -> ModelRoute:
    """The file's weights, but for the ``keep`` versions (a rollout's), which are left as they are."""
    weights = {v.version: v.spec.weight for v in deployment.versions if v.version not in keep}
    routed = _current_route(routes, model)
    if not keep or routed is None:  # (a route deleted live under a rollout: the file's, all of it)
        weights |= {v.version: v.spec.weight for v in deployment.versions if v.version in keep}
        if routed is None or _weights_of(routed) != {v: w for v, w in weights.items() if w}:
            routed = routes.set_weights(model.project, model.model, weights, replace=True)
            progress(f"  routing: {', '.join(f'{v}={w}' for v, w in weights.items())}")
        return routed
    gone = {v.version: 0 for v in routed.versions if v.version not in weights and v.version not in keep}
    wanted = weights | gone
    found = {v.version: v.weight for v in routed.versions}
    if any(found.get(version) != weight for version, weight in wanted.items()):
        routed = routes.set_weights(model.project, model.model, wanted, replace=False)
        progress(f"  routing: {', '.join(f'{v}={w}' for v, w in wanted.items())} (the rollout keeps its own)")
    return routed


def _forget_version(
    model: ModelPlan, version: str, deployment: Deployment | None, routes: RoutingAPI
) -> None:
    try:
        if deployment is None:
            routes.delete(model.project, model.model)  # idempotent enough: NotFound after the first
        else:
            routes.remove_version(model.project, model.model, version)
    except NotFound:
        pass


def _current_route(routes: RoutingAPI, model: ModelPlan) -> ModelRoute | None:
    try:
        return routes.get(model.project, model.model)
    except NotFound:
        return None


def _weights_of(route: ModelRoute) -> dict[str, int]:
    # Compared without the versions at weight 0: replace=True gives every unnamed version 0 anyway.
    return {v.version: v.weight for v in route.versions if v.weight}


def _mirror_of(route: ModelRoute | None, version: str) -> float | None:
    found = route.version(version) if route is not None else None
    return found.mirror_fraction if found is not None and found.mirror else None


def _step(model: ModelPlan, change: VersionChange, outcome: str, detail: str = "") -> StepResult:
    return StepResult(model.project, model.model, change.version, change.action.value, outcome, detail)


def _skip_rest(plan: Plan, failed: ModelPlan, steps: list[StepResult]) -> None:
    done = {(s.project, s.model, s.version) for s in steps}
    for model in plan.models:
        for change in model.versions:
            if (model.project, model.model, change.version) not in done:
                steps.append(
                    _step(model, change, "skipped", f"not applied: {failed.project}/{failed.model} failed")
                )
