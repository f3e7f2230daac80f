"""The control plane's REST app: the model registry, the gateway's routing table and (given a deploy
target) the deploy API, on one database.

A composition root, like ``app.py`` for the model server: it is the one place that sees both the
registry and the gateway. The gateway's store uses the registry's database (``registry.db``,
``registry.schema``); the registry never imports the gateway, so the routing-table endpoints are
handed to ``build_registry_app`` as a *plane* built on the open registry's engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from modelyard.deploy.backend import DeployTarget
from modelyard.deploy.rest import deploy_endpoints
from modelyard.deploy.service import DeployService
from modelyard.deploy.state import DeployStore
from modelyard.gateway.rest import routes_endpoints
from modelyard.gateway.store import RouteStore
from modelyard.registry.core import Registry
from modelyard.registry.rest import build_registry_app
from modelyard.registry.settings import RegistrySettings

__all__ = ["build_control_app"]


def _routing_table(registry: Registry) -> list[BaseRoute]:
    # The store borrows the registry's engine (one pool; the registry app's lifespan disposes it).
    return list(routes_endpoints(RouteStore(registry.engine)))


def _deploy_plane(target: DeployTarget) -> Callable[[Registry], list[BaseRoute]]:
    def plane(registry: Registry) -> list[BaseRoute]:
        store = DeployStore(registry.engine)
        # An apply that was running when the last control plane died never finished: say so.
        store.recover_running("the control plane stopped while this apply was running")
        return list(deploy_endpoints(DeployService(store, RouteStore(registry.engine), target)))

    return plane


def build_control_app(
    settings: RegistrySettings, registry: Registry | None = None, *, target: DeployTarget | None = None
) -> Starlette:
    """The registry API (``/api/v1/models`` ...), the routing table (``/api/v1/routes`` ...) and, with
    a ``target``, the deploy API (``/api/v1/deploy`` ...).

    It opens (and migrates) the registry unless given one, exactly as ``build_registry_app`` does.
    """
    planes: Sequence[Callable[[Registry], Sequence[BaseRoute]]] = [_routing_table]
    if target is not None:
        planes = [_routing_table, _deploy_plane(target)]
    return build_registry_app(settings, registry, planes=planes)
