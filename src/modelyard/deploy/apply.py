"""Carrying a plan out: replicas first, traffic second, removals last — and stop at the first failure.

Per project/model, in the plan's order (``deploy/diff.py``):

1. every ADD and UPDATE version is brought up by the target (``DeployTarget.ensure`` returns only
   once all its replicas are ready; an update is rolling, so the old replicas serve meanwhile);
2. the model's routing is made to match the file: weights and mirrors (versions left out get weight
   0 and no mirror) — only now can traffic reach a new version;
3. DELETE versions leave the routing table, then their replicas are drained and stopped.

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

__all__ = ["TRAFFIC_FIELDS", "ApplyResult", "RoutingAPI", "StepResult", "apply_file", "runtime_spec"]

Progress = Callable[[str], None]
# Fields that only steer traffic: changing them moves weights in the gateway, never restarts replicas.
TRAFFIC_FIELDS = frozenset({"weight", "mirror"})


def runtime_spec(spec: VersionSpec) -> VersionSpec:
    """``spec`` without its traffic fields: what a target compares to decide on a rolling update."""
    return spec.model_copy(update={"weight": 0, "mirror": False})


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
) -> ApplyResult:
    """Make ``target`` and the routing table match ``desired``; ``current`` is what runs now. The
    plan is ``diff(desired, current)`` unless given (the control plane's, computed against the live
    routing table and target: ``deploy/live.py``)."""
    plan = plan if plan is not None else diff(desired, current)
    wanted = {deployment.key: deployment for deployment in desired.deployments}
    steps: list[StepResult] = []
    for model in plan.models:
        progress(f"PROJECT: {model.project} MODEL: {model.model}")
        error = _apply_model(model, wanted.get(model.key), target, routes, steps, progress, timeout_s)
        if error is not None:
            _skip_rest(plan, model, steps)
            return ApplyResult(plan, steps, error)
    return ApplyResult(plan, steps)


def _apply_model(
    model: ModelPlan,
    deployment: Deployment | None,
    target: DeployTarget,
    routes: RoutingAPI,
    steps: list[StepResult],
    progress: Progress,
    timeout_s: float,
) -> str | None:
    rolling = [v for v in model.versions if v.action in (Action.ADD, Action.UPDATE)]
    for index, change in enumerate(rolling, 1):
        progress(f"  {change.action.value} ({index}/{len(rolling)}) {change.version} ...")
        assert change.desired is not None
        if change.action is Action.UPDATE and all(c.path in TRAFFIC_FIELDS for c in change.changes):
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
    _route(model, deployment, routes, progress)
    for change in (v for v in model.versions if v.action is Action.DELETE):
        progress(f"  DELETE {change.version} ...")
        _forget_version(model, change.version, deployment, routes)
        target.remove((model.project, model.model, change.version))
        steps.append(_step(model, change, "done"))
    for change in (v for v in model.versions if v.action is Action.RETAIN):
        steps.append(_step(model, change, "done", "unchanged"))
    return None


def _route(model: ModelPlan, deployment: Deployment | None, routes: RoutingAPI, progress: Progress) -> None:
    """Make the model's weights and mirrors what the file says (no write when they already are)."""
    if deployment is None:
        return  # the whole model goes: _forget_version removes the route with its last version
    weights = {v.version: v.spec.weight for v in deployment.versions}
    mirrors = {v.version: v.spec.mirror_fraction for v in deployment.versions}
    routed = _current_route(routes, model)
    if routed is None or _weights_of(routed) != {v: w for v, w in weights.items() if w}:
        routed = routes.set_weights(model.project, model.model, weights, replace=True)
        progress(f"  routing: {', '.join(f'{v}={w}' for v, w in weights.items())}")
    # A version the file leaves out loses its mirror as it loses its weight (``route mirror`` may
    # have added one live), so the route ends up as the file says.
    for version in (v.version for v in routed.versions if v.version not in mirrors):
        mirrors[version] = None
    for version, fraction in mirrors.items():
        mirrored = _mirror_of(routed, version)
        if fraction is not None and mirrored != fraction:
            routes.set_mirror(model.project, model.model, version, fraction)
        elif fraction is None and mirrored is not None:
            routes.clear_mirror(model.project, model.model, version)


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
