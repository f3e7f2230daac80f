"""The control plane's REST app: the model registry plus the gateway's routing table, one database.

A composition root, like ``app.py`` for the model server: it is the one place that sees both the
registry and the gateway. The gateway's store uses the registry's database (``registry.db``,
``registry.schema``); the registry never imports the gateway, so the routing-table endpoints are
handed to ``build_registry_app`` as a *plane* built on the open registry's engine.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from modelyard.gateway.rest import routes_endpoints
from modelyard.gateway.store import RouteStore
from modelyard.registry.core import Registry
from modelyard.registry.rest import build_registry_app
from modelyard.registry.settings import RegistrySettings

__all__ = ["build_control_app"]


def _routing_table(registry: Registry) -> list[BaseRoute]:
    # The store borrows the registry's engine (one pool; the registry app's lifespan disposes it).
    return list(routes_endpoints(RouteStore(registry.engine)))


def build_control_app(settings: RegistrySettings, registry: Registry | None = None) -> Starlette:
    """The registry API (``/api/v1/models`` ...) and the routing table (``/api/v1/routes`` ...).

    It opens (and migrates) the registry unless given one, exactly as ``build_registry_app`` does.
    """
    return build_registry_app(settings, registry, planes=[_routing_table])
