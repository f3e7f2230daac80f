"""The online analysis over REST (viewers):

GET /api/v1/analysis/{project}/{model}   each version's stats, each (baseline, candidate) pair's
                                          comparison and gates, whether the log can show answers
GET /api/v1/analysis/metrics             the ``modelyard_shadow_*`` series, Prometheus text format
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import ModelyardError, NotFound
from modelyard.routing.table import ModelRoute
from modelyard.validation.evidence import VersionStats
from modelyard.validation.online import OnlineAnalysis, check_route
from modelyard.validation.online_metrics import analysis_registry
from modelyard.web.access import Role
from modelyard.web.http import Handler, guarded_routes, in_thread, json_response

__all__ = ["analysis_routes", "version_view"]

PREFIX = "/api/v1/analysis"
Lookup = Callable[[str, str], ModelRoute]  # the routing table's get(): RouteNotFound when missing


def version_view(stats: VersionStats) -> dict[str, Any]:
    """A version's figures as JSON (rates and quantiles None without data: never 0)."""
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": stats.error_rate,
        "p50_ms": stats.latency_quantile(0.5),
        "p99_ms": stats.latency_quantile(0.99),
        "mirrored": stats.mirrored,
        "mirror_errors": stats.mirror_errors,
        "mirror_error_rate": stats.mirror_error_rate,
        "mirror_p99_ms": stats.latency_quantile(0.99, mirrored=True),
        "compared": stats.compared,
        "agreed": stats.agreed,
        "agreement": stats.agreement,
        "unmatched": stats.unmatched,
    }


class _Endpoints:
    def __init__(self, analysis: OnlineAnalysis, lookup: Lookup) -> None:
        self.analysis = analysis
        self.lookup = lookup
        self.registry = analysis_registry(analysis)

    async def view(self, request: Request) -> Response:
        project, model = request.path_params["project"], request.path_params["model"]
        route = await in_thread(self._route, project, model)
        stats = self.analysis.stats(project, model)
        if route is None and not stats:
            raise NotFound(f"no route {project}/{model} and no logged answers for it", field="model")
        source = self.analysis.source
        body: dict[str, Any] = {
            "project": project,
            "model": model,
            "healthy": self.analysis.healthy(),
            "problem": self.analysis.problem,
            "source": (
                {"kind": source.name, "position": source.position, "skipped": source.skipped}
                if source is not None
                else None
            ),
            "log_payload": route.log_payload if route is not None else None,
            "versions": {name: version_view(figures) for name, figures in sorted(stats.items())},
            "pairs": await in_thread(self.analysis.pairs, project, model),
        }
        if route is not None:
            try:
                check_route(route)
            except ModelyardError as exc:
                body["refused"] = exc.message
        return json_response(body)

    def _route(self, project: str, model: str) -> ModelRoute | None:
        try:
            return self.lookup(project, model)
        except NotFound:
            return None

    async def metrics(self, request: Request) -> Response:
        text = await in_thread(generate_latest, self.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def analysis_routes(analysis: OnlineAnalysis, lookup: Lookup) -> list[Route]:
    """The analysis' routes, for the control-plane app (``lookup`` reads the routing table)."""
    e = _Endpoints(analysis, lookup)
    table: list[tuple[str, str, Role, Handler]] = [
        ("GET", f"{PREFIX}/metrics", Role.VIEWER, e.metrics),
        ("GET", f"{PREFIX}/{{project}}/{{model}}", Role.VIEWER, e.view),
    ]
    return guarded_routes(table)
