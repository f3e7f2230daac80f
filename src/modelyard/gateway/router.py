"""A worker's live view of the routing table: which version and replica serves a request.

Built from a :class:`RoutingTable` snapshot; rebuilt on every table change. Balancer state
(smooth-weighted counters, replica health) carries over for versions and replicas that survive
the change, so an unrelated edit neither resets a split nor forgives a failing replica.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from modelyard.errors import ModelNotReady, NotFound
from modelyard.gateway.balance import ReplicaPool, SmoothWeighted
from modelyard.gateway.table import ModelRoute, RoutingTable, VersionRoute

__all__ = ["Choice", "Router"]

PoolFactory = Callable[[str, str, str, tuple[str, ...]], ReplicaPool]


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """Where one request goes: the route (for options), the version and its replica pool."""

    route: ModelRoute
    version: VersionRoute
    pool: ReplicaPool


class _ModelState:
    __slots__ = ("mirror_credit", "mirrors", "pools", "route", "split")

    def __init__(self, route: ModelRoute, pools: dict[str, ReplicaPool], split: SmoothWeighted) -> None:
        self.route = route
        self.pools = pools
        self.split = split
        self.mirrors = [version for version in route.versions if version.mirror]
        self.mirror_credit = dict.fromkeys((version.version for version in self.mirrors), 0.0)


class Router:
    """Resolves ``(project, model, version?)`` to a :class:`Choice`; 404s name what is missing."""

    def __init__(self, table: RoutingTable, make_pool: PoolFactory, previous: Router | None = None) -> None:
        self.table = table
        self._models: dict[tuple[str, str], _ModelState] = {}
        for key, route in table.routes.items():
            old = previous._models.get(key) if previous is not None else None
            self._models[key] = _build(route, make_pool, old)

    @property
    def revision(self) -> int:
        return self.table.revision

    def replica_urls(self) -> set[str]:
        return {
            url
            for state in self._models.values()
            for version in state.route.versions
            for url in version.replicas
        }

    def choose(self, project: str, model: str, version: str | None) -> Choice:
        state = self._models.get((project, model))
        if state is None:
            raise self._missing(project, model)
        route = state.route
        name = version
        if name is None:
            if not state.split:
                raise ModelNotReady(f"{project}/{model}", "no version has a traffic weight above 0")
            name = state.split.pick()
        chosen = route.version(name)
        if chosen is None:
            raise NotFound(f"version '{name}' of model '{project}/{model}' not found", field="version")
        return Choice(route, chosen, state.pools[chosen.version])

    def mirrors(self, project: str, model: str, primary: str) -> list[Choice]:
        """The mirror versions that get a copy of this request (each at its sampled fraction)."""
        state = self._models.get((project, model))
        if state is None or not state.mirrors:
            return []
        chosen = []
        for version in state.mirrors:
            if version.version == primary:
                continue
            # A credit accumulator instead of random(): exactly `fraction` of requests, evenly spread.
            credit = state.mirror_credit[version.version] + version.mirror_fraction
            if credit >= 1.0:
                credit -= 1.0
                chosen.append(Choice(state.route, version, state.pools[version.version]))
            state.mirror_credit[version.version] = credit
        return chosen

    def _missing(self, project: str, model: str) -> NotFound:
        if project not in self.table.projects():
            return NotFound(f"project '{project}' not found", field="project")
        return NotFound(f"model '{model}' not found in project '{project}'", field="model")


def _build(route: ModelRoute, make_pool: PoolFactory, old: _ModelState | None) -> _ModelState:
    pools: dict[str, ReplicaPool] = {}
    for version in route.versions:
        pool = make_pool(route.project, route.model, version.version, version.replicas)
        if old is not None and version.version in old.pools:
            pool.carry_health(old.pools[version.version])
        pools[version.version] = pool
    names = [version.version for version in route.versions]
    weights = [version.weight for version in route.versions]
    split = SmoothWeighted(names, weights)
    if old is not None:
        split.carry_position(old.split)
    state = _ModelState(route, pools, split)
    if old is not None:
        for name in state.mirror_credit:
            state.mirror_credit[name] = old.mirror_credit.get(name, 0.0)
    return state
