"""A worker's live view of the routing table: which version and replica serves a request.

Built from a :class:`RoutingTable` snapshot, one :class:`~modelyard.gateway.choice.Choice` per
version; rebuilt on every table change. Balancer state (smooth-weighted counters, replica health)
carries over for versions and replicas that survive the change, so an unrelated edit neither
resets a split nor forgives a failing replica.
"""

from __future__ import annotations

from collections.abc import Callable

from modelyard.errors import ModelNotReady, NotFound
from modelyard.gateway.balance import ReplicaPool, SmoothWeighted
from modelyard.gateway.choice import Choice
from modelyard.routing.table import ModelRoute, RoutingTable

__all__ = ["Router"]

PoolFactory = Callable[[str, str, str, tuple[str, ...]], ReplicaPool]


class _ModelState:
    __slots__ = ("choices", "mirror_credit", "mirrors", "route", "split")

    def __init__(self, route: ModelRoute, pools: dict[str, ReplicaPool], split: SmoothWeighted) -> None:
        self.route = route
        self.choices = {
            version.version: Choice(route, version, pools[version.version]) for version in route.versions
        }
        self.split = split
        self.mirrors = [self.choices[version.version] for version in route.versions if version.mirror]
        self.mirror_credit = dict.fromkeys((choice.version.version for choice in self.mirrors), 0.0)


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

    def replica_loads(self) -> list[tuple[str, str, str, str, int]]:
        """(project, model, version, replica URL, attempts in flight) for every replica routed to."""
        return [
            (*choice.labels, url, in_flight)
            for state in self._models.values()
            for choice in state.choices.values()
            for url, in_flight in choice.pool.in_flight()
        ]

    def choose(self, project: str, model: str, version: str | None) -> Choice:
        state = self._models.get((project, model))
        if state is None:
            raise self._missing(project, model)
        name = version
        if name is None:
            if not state.split:
                raise ModelNotReady(f"{project}/{model}", "no version has a traffic weight above 0")
            name = state.split.pick()
        chosen = state.choices.get(name)
        if chosen is None:
            raise NotFound(f"version '{name}' of model '{project}/{model}' not found", field="version")
        return chosen

    def mirrors(self, project: str, model: str, primary: str) -> list[Choice]:
        """The mirror versions that get a copy of this request (each at its sampled fraction)."""
        state = self._models.get((project, model))
        if state is None or not state.mirrors:
            return []
        chosen = []
        for choice in state.mirrors:
            name = choice.version.version
            if name == primary:
                continue
            # A credit accumulator instead of random(): exactly `fraction` of requests, evenly spread.
            credit = state.mirror_credit[name] + choice.version.mirror_fraction
            if credit >= 1.0:
                credit -= 1.0
                chosen.append(choice)
            state.mirror_credit[name] = credit
        return chosen

    def _missing(self, project: str, model: str) -> NotFound:
        if project not in self.table.projects():
            return NotFound(f"project '{project}' not found", field="project")
        return NotFound(f"model '{model}' not found in project '{project}'", field="model")


def _build(route: ModelRoute, make_pool: PoolFactory, old: _ModelState | None) -> _ModelState:
    pools: dict[str, ReplicaPool] = {}
    for version in route.versions:
        pool = make_pool(route.project, route.model, version.version, version.replicas)
        if old is not None and version.version in old.choices:
            pool.carry_health(old.choices[version.version].pool)
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
