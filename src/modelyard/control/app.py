"""The control plane's REST app: the model registry, the routing table and (given a deploy target)
the deploy API, on one database.

A composition root, like ``server/app.py`` for the model server: the one place that sees every
plane. Each plane offers its routes on an open store (``registry_routes``, ``routes_endpoints``,
``deploy_endpoints``); the stores share the registry's engine, so there is one connection pool, and
this app's lifespan closes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.access.policy import TokenAuthorizer
from modelyard.access.rest import token_routes
from modelyard.access.store import TokenStore
from modelyard.control.settings import ControlSettings
from modelyard.deploy.backend import DeployTarget
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.policy import DeployPolicy
from modelyard.deploy.rest import deploy_endpoints
from modelyard.deploy.service import DeployService
from modelyard.deploy.spec import DeployFile, Deployment
from modelyard.deploy.state import DeployStore
from modelyard.deploy.targets.replica_gate import GatedTarget
from modelyard.errors import ModelyardError, NotFound
from modelyard.registry.core import Registry
from modelyard.registry.refs import ModelRef, parse_ref
from modelyard.registry.rest import PREFIX, registry_routes
from modelyard.registry.types import ModelVersion
from modelyard.rollout.controller import Controller
from modelyard.rollout.rest import rollout_routes
from modelyard.rollout.store import RolloutStore
from modelyard.routing.rest import routes_endpoints
from modelyard.routing.store import RouteStore
from modelyard.validation.job_store import JobStore
from modelyard.validation.jobs import JobRunner, runner_name
from modelyard.validation.jobs_rest import validation_job_routes
from modelyard.validation.logread import open_source
from modelyard.validation.online import OnlineAnalysis
from modelyard.validation.online_rest import analysis_routes
from modelyard.web.browser import BrowserGuard
from modelyard.web.http import http_error, json_response

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


def _deploy_plane(
    target: DeployTarget, policy: DeployPolicy, rollouts: Controller
) -> Callable[[Registry], list[BaseRoute]]:
    def plane(registry: Registry) -> list[BaseRoute]:
        store = DeployStore(registry.engine)
        # An apply that was running when the last control plane died never finished: say so.
        store.recover_running("the control plane stopped while this apply was running")
        routes = RouteStore(registry.engine)
        service = DeployService(store, routes, target, RegistryUsage(registry), policy, rollouts)
        return [*deploy_endpoints(service), *rollout_routes(rollouts)]

    return plane


async def _health(request: Request) -> Response:
    return json_response({"status": "ok"})


def _online_analysis(settings: ControlSettings) -> OnlineAnalysis:
    """The analysis of the gateway's log (``analysis_log``; ``none``: an analysis that reads nothing)."""
    log = settings.resolved_analysis_log()
    return OnlineAnalysis(None if log == "none" else open_source(log))


def _applied(registry: Registry) -> Callable[[str, str], Deployment | None]:
    """The last applied deploy file's deployment of a model: what ``deploy retry`` rolls out again."""
    store = DeployStore(registry.engine)

    def deployment(project: str, model: str) -> Deployment | None:
        current = store.current()
        found = load_deploy_file(current.file_text, f"apply #{current.id}") if current else DeployFile()
        return next((d for d in found.deployments if d.key == (project, model)), None)

    return deployment


def _all_routes(
    core: Registry,
    settings: ControlSettings,
    authorizer: TokenAuthorizer,
    target: DeployTarget | None,
    analysis: OnlineAnalysis,
    rollouts: Controller | None,
) -> list[BaseRoute]:
    planes: list[list[BaseRoute]] = [
        registry_routes(core),
        _routing_table(core),
        list(token_routes(authorizer.store, authorizer)),
        list(analysis_routes(analysis, RouteStore(core.engine).get)),
    ]
    if target is not None and rollouts is not None:
        planes.append(_deploy_plane(target, DeployPolicy.from_settings(settings), rollouts)(core))
    health = Route(f"{PREFIX}/health", _health, methods=["GET"])  # the one open route: probes carry no token
    return [*(route for plane in planes for route in plane), health]


def build_control_app(
    settings: ControlSettings, registry: Registry | None = None, *, target: DeployTarget | None = None
) -> Starlette:
    """The registry API (``/api/v1/models`` ...), the routing table (``/api/v1/routes`` ...), the
    token API (``/api/v1/tokens``), the online analysis of the gateway's log
    (``/api/v1/analysis``, read in a thread the lifespan starts and stops), a health check
    (``/api/v1/health``, the one route open to anyone) and, with a ``target``, the deploy API
    (``/api/v1/deploy`` ...) and the rollouts (``/api/v1/rollouts``, driven by a loop the lifespan
    starts, which first resumes every rollout a previous control plane left in progress).

    Every other route checks the caller's role against the token policy (``access/policy.py``),
    and the whole app refuses what a browser may be tricked into sending (``web/browser.py``).
    It opens (and migrates) the database unless given an open ``registry``; one it opened, its
    lifespan closes.
    """
    own = registry is None
    core = registry if registry is not None else Registry(settings)
    analysis = _online_analysis(settings)
    # Validation jobs: pushes and alias moves of models with a setup, validated in a thread.
    jobs = JobRunner(JobStore(core.engine), core, name=runner_name(settings.host, settings.port))
    rollouts = None
    if target is not None:  # rollouts read the analysis's evidence and write the routing table
        evidence = analysis if analysis.source is not None else None  # analysis_log none: refused
        rollouts = Controller(
            RolloutStore(core.engine), RouteStore(core.engine), evidence, applied=_applied(core)
        )
        if isinstance(target, GatedTarget):  # a spec's replica_gate reads the same analysis
            target.use_replica_evidence(evidence)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        analysis.start()  # reads the gateway's log in a thread of its own
        jobs.start()
        if rollouts is not None:
            rollouts.start_loop()
        yield
        if rollouts is not None:
            rollouts.stop_loop()
        jobs.stop()
        analysis.stop()
        if own:
            core.close()

    authorizer = TokenAuthorizer(TokenStore(core.engine), settings)
    all_routes = _all_routes(core, settings, authorizer, target, analysis, rollouts)
    all_routes += validation_job_routes(jobs.store, jobs.wake)
    guard = Middleware(BrowserGuard, bind_host=settings.host, allowed_hosts=settings.allowed_hosts)
    app = Starlette(
        routes=all_routes,
        middleware=[guard],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.registry = core
    app.state.authorizer = authorizer
    app.state.analysis = analysis  # the Evidence a rollout reads
    app.state.rollouts = rollouts
    app.state.validation_jobs = jobs
    return app
