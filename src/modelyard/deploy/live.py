"""The plan against the live state: the routing table and the deploy target as they are now.

The last applied file says what apply left behind. Since then ``modelyard route set`` may have moved
weights or mirrors, a route may have been deleted, a version may have stopped running (the local
backend's replicas end with ``modelyard up``), and a failed apply may have left a version running
that no successful apply lists. :func:`live_plan` plans against what is there now:

- weights and mirrors come from the routing table;
- which versions run comes from the target (``DeployTarget.status``): a version the last apply
  started that runs no more is added again; one that runs though no successful apply lists it is
  deleted, unless the file lists it;
- the rest of a running version's spec (uri, replicas, resources, batching, server, probes) comes
  from the last applied file: neither the routing table nor every target can tell it;
- the traffic of the versions a rollout steers (a candidate and its baseline) is the rollout's to
  move: it is read from the last applied file, so a rollout's steps are neither drift nor an update.

Each difference from the last apply becomes a :class:`~modelyard.deploy.diff.Drift` that says
whether apply overwrites it. Pure but for the routing-table reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from modelyard.deploy.backend import ReplicaStatus, VersionKey
from modelyard.deploy.diff import ORDER, Action, Drift, ModelPlan, Plan, VersionChange, diff
from modelyard.deploy.spec import DeployFile, Deployment, VersionDeployment
from modelyard.errors import NotFound
from modelyard.routing.table import ModelRoute

__all__ = ["RouteReader", "live_plan", "running_versions"]

ModelKey = tuple[str, str]
# version -> (weight, mirrored fraction or None); a version missing has (0, None)
Traffic = dict[str, tuple[int, float | None]]
_NONE: tuple[int, float | None] = (0, None)


class RouteReader(Protocol):
    """The one routing-table read a live plan needs (``RouteStore`` and ``RouteClient`` have it)."""

    def get(self, project: str, model: str) -> ModelRoute: ...


def running_versions(replicas: Iterable[ReplicaStatus]) -> set[VersionKey]:
    """The versions a target runs: those with a replica that is not being stopped."""
    return {(r.project, r.model, r.version) for r in replicas if r.state != "stopping"}


def live_plan(
    desired: DeployFile, applied: DeployFile, routes: RouteReader, running: Iterable[VersionKey]
) -> Plan:
    """The plan that turns what runs now into ``desired``; ``applied`` is the last applied file and
    ``running`` the versions the target runs (:func:`running_versions`)."""
    want = {d.key: d for d in desired.deployments}
    had = {d.key: d for d in applied.deployments}
    running = set(running)
    drift: list[Drift] = []
    current: list[Deployment] = []
    for key in sorted(had.keys() | want.keys()):
        route = _route(routes, key)
        drift += _traffic_drift(key, had.get(key), want.get(key), route)
        if key in had:
            stopped = _stopped(key, had[key], want.get(key), running, drift)
            current.append(_as_running(had[key], route, stopped))
    orphans = _orphans(had, want, running, drift)
    # model_construct: no validation, since a route deleted live leaves no weight above 0 (fine here)
    plan = diff(desired, DeployFile.model_construct(deployments=current))
    drift.sort(key=lambda item: (item.project, item.model))  # stable: per model, as found
    return Plan(_with_deletions(plan.models, orphans), drift)


def _route(routes: RouteReader, key: ModelKey) -> ModelRoute | None:
    try:
        return routes.get(*key)
    except NotFound:
        return None


def _file_traffic(deployment: Deployment | None) -> Traffic:
    versions = deployment.versions if deployment is not None else []
    return {v.version: (v.spec.weight, v.spec.mirror_fraction) for v in versions}


def _route_traffic(route: ModelRoute | None) -> Traffic:
    versions = route.versions if route is not None else ()
    return {v.version: (v.weight, v.mirror_fraction if v.mirror else None) for v in versions}


def _traffic_drift(
    key: ModelKey, applied: Deployment | None, desired: Deployment | None, route: ModelRoute | None
) -> list[Drift]:
    """Weights and mirrors that differ from what the last apply wrote (a route nobody applied: only
    when the file is about to take it over)."""
    live, file = _steered_as_applied(_route_traffic(route), applied), _file_traffic(desired)
    if applied is None:
        if desired is None or not any(w or m for w, m in live.values()):
            return []
        overwrite = _differs(live, file, set(live) | set(file))
        tail = "apply takes the route over" if overwrite else "the file agrees with it"
        return [Drift(*key, f"routed by hand, not by an apply ({_describe(live)}); {tail}", overwrite)]
    if route is None:
        tail = "apply writes it again" if desired is not None else "the file deletes it too"
        return [Drift(*key, f"route deleted live since the last apply; {tail}", desired is not None)]
    then = _file_traffic(applied)
    found: list[Drift] = []
    for what, index in (("weights", 0), ("mirrors", 1)):
        changed = [v for v in {**then, **live} if then.get(v, _NONE)[index] != live.get(v, _NONE)[index]]
        if not changed:
            continue
        moves = ", ".join(
            f"{v} {_show(then.get(v, _NONE), index)} -> {_show(live.get(v, _NONE), index)}" for v in changed
        )
        overwrite = desired is None or _differs(live, file, set(changed), index)
        tail = "apply deletes the route" if desired is None else "apply overwrites them"
        tail = tail if overwrite else "the file agrees with them now"
        found.append(Drift(*key, f"{what} changed live since the last apply ({moves}); {tail}", overwrite))
    return found


def _steered_as_applied(live: Traffic, applied: Deployment | None) -> Traffic:
    """``live`` with the traffic of the versions the applied file's rollout steers as that file wrote it."""
    if applied is None or not applied.steered:
        return live
    then = _file_traffic(applied)
    return {**live, **{version: then[version] for version in applied.steered}}


def _differs(live: Traffic, file: Traffic, versions: set[str], index: int | None = None) -> bool:
    """Whether apply would change any of ``versions``' weight or mirror (or only the one ``index``
    names): a version the file leaves out gets weight 0 and no mirror."""
    for version in versions:
        now, wanted = live.get(version, _NONE), file.get(version, _NONE)
        if now != wanted if index is None else now[index] != wanted[index]:
            return True
    return False


def _show(traffic: tuple[int, float | None], index: int) -> str:
    if index == 0:
        return str(traffic[0])
    return "off" if traffic[1] is None else f"{traffic[1]:.0%}"


def _describe(live: Traffic) -> str:
    parts = [f"{v}={w}" for v, (w, _) in live.items() if w]
    parts += [f"{v} mirror {m:.0%}" for v, (_, m) in live.items() if m is not None]
    return ", ".join(parts)


def _stopped(
    key: ModelKey,
    applied: Deployment,
    desired: Deployment | None,
    running: set[VersionKey],
    drift: list[Drift],
) -> set[str]:
    """The applied versions that should run replicas and do not; returns those the file still
    lists (the plan adds them again; the others it deletes as it would anyway)."""
    listed = {v.version for v in desired.versions} if desired is not None else set()
    stopped: set[str] = set()
    for version in applied.versions:
        if version.spec.min_replicas == 0 or (*key, version.version) in running:
            continue
        again = version.version in listed
        tail = "apply starts it again" if again else "the file deletes it anyway"
        message = f"{version.version} is not running, though the last apply started it; {tail}"
        drift.append(Drift(*key, message, again))
        if again:
            stopped.add(version.version)
    return stopped


def _as_running(applied: Deployment, route: ModelRoute | None, stopped: set[str]) -> Deployment:
    """The applied deployment as it runs now: live weights and mirrors, without stopped versions."""
    live = _steered_as_applied(_route_traffic(route), applied)
    versions: list[VersionDeployment] = []
    for version in applied.versions:
        if version.version in stopped:
            continue
        spec, (weight, fraction) = version.spec, live.get(version.version, _NONE)
        update: dict[str, object] = {}
        if weight != spec.weight:
            update["weight"] = weight
        if fraction != spec.mirror_fraction:
            update["mirror"] = True if fraction == 1.0 else (False if fraction is None else fraction)
        if update:  # model_copy marks the fields written: the plan prints the live values
            version = version.model_copy(update={"spec": spec.model_copy(update=update)})
        versions.append(version)
    return applied.model_copy(update={"versions": versions})


def _orphans(
    had: dict[ModelKey, Deployment],
    want: dict[ModelKey, Deployment],
    running: set[VersionKey],
    drift: list[Drift],
) -> list[VersionKey]:
    """Versions that run though no successful apply lists them (a failed apply started them): the
    file's are added (ensured) by the plan anyway; the others are returned, to be deleted."""
    gone: list[VersionKey] = []
    for key in sorted(running):
        model, version = key[:2], key[2]
        if model in had and any(v.version == version for v in had[model].versions):
            continue
        listed = model in want and any(v.version == version for v in want[model].versions)
        tail = "apply runs it as the file says" if listed else "apply stops it"
        drift.append(Drift(*model, f"{version} runs, but no successful apply lists it; {tail}"))
        if not listed:
            gone.append(key)
    return gone


def _with_deletions(models: list[ModelPlan], orphans: list[VersionKey]) -> list[ModelPlan]:
    """``models`` with a DELETE (spec unknown) for each orphan, in apply order, models sorted."""
    extra: dict[ModelKey, list[VersionChange]] = {}
    for project, model, version in orphans:
        extra.setdefault((project, model), []).append(VersionChange(Action.DELETE, version))
    merged = {m.key: m for m in models}
    for key, deletions in extra.items():
        versions = [*merged[key].versions, *deletions] if key in merged else deletions
        versions.sort(key=lambda v: ORDER.index(v.action))
        merged[key] = ModelPlan(*key, versions)
    return [merged[key] for key in sorted(merged)]
