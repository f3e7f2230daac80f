"""The control plane's REST app: the model registry, the gateway's routing table and (given a deploy
target) the deploy API, on one database.

A composition root, like ``app.py`` for the model server: it is the one place that sees both the
registry and the gateway. The gateway's store uses the registry's database (``registry.db``,
``registry.schema``); the registry never imports the gateway, so the routing-table endpoints are
handed to ``build_registry_app`` as a *plane* built on the open registry's engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from modelyard.control.settings import ControlSettings
from modelyard.deploy.backend import DeployTarget
from modelyard.deploy.rest import deploy_endpoints
from modelyard.deploy.service import DeployService
from modelyard.deploy.spec import DeployFile
from modelyard.deploy.state import DeployStore
from modelyard.errors import ModelyardError, NotFound
from modelyard.registry.core import Registry
from modelyard.registry.refs import ModelRef, parse_ref
from modelyard.registry.rest import build_registry_app
from modelyard.registry.types import ModelVersion
from modelyard.routing.rest import routes_endpoints
from modelyard.routing.store import RouteStore

__all__ = ["RegistryUsage", "build_control_app"]

log = logging.getLogger("modelyard.deploy")


def _routing_table(registry: Registry) -> list[BaseRoute]:
    # The store borrows the registry's engine (one pool; the registry app's lifespan disposes it).
    return list(routes_endpoints(RouteStore(registry.engine)))


class RegistryUsage:
    """Marks the registry versions a deployment uses (``deployment/<project>/<model>/<version>``),
    so ``modelyard registry delete`` refuses them, and unmarks what an apply stopped using."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def record(self, desired: DeployFile, previous: dict[str, list[Any]]) -> dict[str, list[Any]]:
        now: dict[str, list[Any]] = {}
        for deployment in desired.deployments:
            for version in deployment.versions:
                ref = _registry_ref(version.spec.uri)
                found = self._resolve(ref) if ref is not None else None
                if found is not None:
                    consumer = f"deployment/{deployment.project}/{deployment.model}/{version.version}"
                    now[consumer] = [found.name, found.version]
                    self.registry.mark_used(found.name, found.version, consumer)
        for consumer, (name, number) in previous.items():
            if now.get(consumer) != [name, number]:
                with contextlib.suppress(NotFound):  # the version was deleted with --force meanwhile
                    self.registry.unmark_used(name, int(number), consumer)
        return now

    def _resolve(self, ref: ModelRef) -> ModelVersion | None:
        try:
            return self.registry.resolve(ref)
        except NotFound:  # its replicas run from a copy fetched earlier: nothing to protect here
            log.warning("deployment uses %s, which the registry no longer has", ref)
            return None


def _registry_ref(uri: str) -> ModelRef | None:
    """``uri`` as a registry reference (``name@alias``, ``name/3``), None for a package path."""
    if Path(uri).exists() or ("@" not in uri and uri.count("/") != 1):
        return None
    try:
        return parse_ref(uri)
    except ModelyardError:  # e.g. models/x.onnx: a path, not a reference
        return None


def _deploy_plane(target: DeployTarget) -> Callable[[Registry], list[BaseRoute]]:
    def plane(registry: Registry) -> list[BaseRoute]:
        store = DeployStore(registry.engine)
        # An apply that was running when the last control plane died never finished: say so.
        store.recover_running("the control plane stopped while this apply was running")
        service = DeployService(store, RouteStore(registry.engine), target, RegistryUsage(registry))
        return list(deploy_endpoints(service))

    return plane


def build_control_app(
    settings: ControlSettings, registry: Registry | None = None, *, target: DeployTarget | None = None
) -> Starlette:
    """The registry API (``/api/v1/models`` ...), the routing table (``/api/v1/routes`` ...) and, with
    a ``target``, the deploy API (``/api/v1/deploy`` ...).

    It opens (and migrates) the registry unless given one, exactly as ``build_registry_app`` does.
    """
    planes: Sequence[Callable[[Registry], Sequence[BaseRoute]]] = [_routing_table]
    if target is not None:
        planes = [_routing_table, _deploy_plane(target)]
    return build_registry_app(settings, registry, planes=planes)
