"""Every route of the control plane checks the caller's role: a table of what each needs, walked
against a live app with access control on. A new route that is not in the table, or that lets a
caller through without the role it needs, fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from modelyard.access.store import TokenStore
from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from modelyard.routing.store import RouteStore
from modelyard.web.access import Role
from tests.deploy.support import RecordingTarget
from tests.support import serve_in_thread

V, D, A = Role.VIEWER, Role.DEPLOYER, Role.ADMIN
API = "/api/v1"
M, VER, R = f"{API}/models/{{name}}", f"{API}/models/{{name}}/versions/{{version}}", f"{API}/routes"
RM, RV = f"{R}/{{project}}/{{model}}", f"{R}/{{project}}/{{model}}/versions/{{version}}"
# (method, path) -> the least role it needs. Health is the one route open to anyone (probes).
EXPECTED: dict[tuple[str, str], Role | None] = {
    ("GET", f"{API}/health"): None,
    ("GET", f"{API}/openapi.json"): V,
    ("GET", f"{API}/models"): V,
    ("POST", f"{API}/models"): D,
    ("GET", M): V,
    ("PATCH", M): D,
    ("DELETE", M): A,
    ("GET", f"{M}/versions"): V,
    ("POST", f"{M}/versions"): D,
    ("GET", VER): V,
    ("DELETE", VER): A,
    ("GET", f"{VER}/artifact"): V,
    ("GET", f"{VER}/validations"): V,
    ("POST", f"{VER}/validations"): D,
    ("GET", f"{VER}/usages"): V,
    ("PUT", f"{VER}/usages/{{consumer:path}}"): D,
    ("DELETE", f"{VER}/usages/{{consumer:path}}"): D,
    ("GET", f"{M}/aliases"): V,
    ("GET", f"{M}/aliases/{{alias}}"): V,
    ("PUT", f"{M}/aliases/{{alias}}"): D,
    ("DELETE", f"{M}/aliases/{{alias}}"): D,
    ("GET", f"{M}/history"): V,
    ("POST", f"{API}/artifacts"): D,
    ("GET", f"{API}/resolve"): V,
    ("POST", f"{API}/gc"): A,
    ("GET", R): V,
    ("GET", f"{R}/_revision"): V,
    ("GET", RM): V,
    ("PATCH", RM): D,
    ("DELETE", RM): D,
    ("PUT", f"{RM}/weights"): D,
    ("DELETE", RV): D,
    ("PUT", f"{RV}/mirror"): D,
    ("DELETE", f"{RV}/mirror"): D,
    ("PUT", f"{RV}/replicas"): D,
    ("POST", f"{RV}/replicas"): D,
    ("DELETE", f"{RV}/replicas"): D,
    ("GET", f"{R}/_endpoints"): V,
    ("PUT", f"{RV}/endpoints"): D,
    ("DELETE", f"{RV}/endpoints"): D,
    ("POST", f"{API}/keys"): A,
    ("GET", f"{API}/keys"): A,
    ("DELETE", f"{API}/keys"): A,
    ("DELETE", f"{API}/keys/{{id}}"): A,
    ("POST", f"{API}/tokens"): A,
    ("GET", f"{API}/tokens"): A,
    ("DELETE", f"{API}/tokens/{{token}}"): A,
    ("GET", f"{API}/whoami"): V,
    ("POST", f"{API}/deploy/diff"): D,
    ("POST", f"{API}/deploy/apply"): D,
    ("GET", f"{API}/deploy/status"): V,
    ("GET", f"{API}/deploy/history"): V,
    ("GET", f"{API}/deploy/history/{{id}}"): V,
    ("POST", f"{API}/deploy/rollback/{{id}}"): D,
    ("GET", f"{API}/rollouts"): V,
    ("GET", f"{API}/rollouts/latest"): V,
    ("GET", f"{API}/rollouts/events"): V,
    ("GET", f"{API}/rollouts/{{project}}/{{model}}"): V,
    ("POST", f"{API}/rollouts/{{project}}/{{model}}/promote"): D,
    ("POST", f"{API}/rollouts/{{project}}/{{model}}/abort"): D,
    ("POST", f"{API}/rollouts/{{project}}/{{model}}/pause"): D,
    ("POST", f"{API}/rollouts/{{project}}/{{model}}/resume"): D,
    ("POST", f"{API}/rollouts/{{project}}/{{model}}/retry"): D,
    ("GET", f"{API}/analysis/metrics"): V,
    ("GET", f"{API}/analysis/{{project}}/{{model}}"): V,
    ("PUT", f"{M}/validation"): D,
    ("GET", f"{M}/validation"): V,
    ("DELETE", f"{M}/validation"): D,
    ("GET", f"{M}/validation/jobs"): V,
    ("GET", f"{API}/validation/jobs/{{id}}"): V,
    ("POST", f"{VER}/validation/run"): D,
}
Live = tuple[ControlSettings, str, dict[Role, str], Starlette]
PARAMS = {"consumer:path": "deployment/p/m/v1", "version": "1", "id": "1"}


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PARAMS.get(m.group(1), "x"), path)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings = ControlSettings(home=tmp_path / "home")
    with Registry(settings) as registry:
        tokens = TokenStore(registry.engine)
        made = {role: tokens.create(f"t-{role.label}", role, created_by="test")[1] for role in Role}
        app = build_control_app(settings, registry, target=RecordingTarget())
        with serve_in_thread(app) as at:
            yield settings, f"http://{at}", made, app


def _rows(app: Starlette) -> list[tuple[str, str]]:
    routes = app.routes
    return [
        (method, r.path)
        for r in routes
        if isinstance(r, Route)
        for method in sorted(r.methods or ())
        if method != "HEAD"
    ]


def test_the_table_names_exactly_the_routes_of_the_app(
    live: Live,
) -> None:
    *_, app = live
    # A Mount (or any other kind of route) would hide its own routes from this walk.
    assert all(type(route) is Route for route in app.routes)
    assert sorted(_rows(app)) == sorted(EXPECTED), "a route was added or removed: give it its role here"


def test_every_route_refuses_callers_without_the_role(
    live: Live,
) -> None:
    _, url, tokens, app = live
    with httpx.Client(base_url=url, timeout=10) as http:
        for method, path in _rows(app):
            need = EXPECTED[(method, path)]
            target = _concrete(path)
            anonymous = http.request(method, target, json={} if method != "GET" else None)
            if need is None:
                assert anonymous.status_code == 200, (method, path)
                continue
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.json()["kind"] == "unauthenticated"
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            for role, token in tokens.items():
                answer = http.request(
                    method,
                    target,
                    json={} if method != "GET" else None,
                    headers={"authorization": f"Bearer {token}"},
                )
                if role < need:
                    assert answer.status_code == 403, (method, path, role, answer.text)
                    assert answer.json()["kind"] == "forbidden"
                else:
                    assert answer.status_code not in (401, 403), (method, path, role, answer.text)
                    break  # the first sufficient role got past the check; a write may have happened


def _state(settings: ControlSettings) -> tuple[int, int]:
    with RouteStore.open(settings) as routes, Registry(settings) as registry:
        return routes.revision(), len(registry.list_models().items)


def test_refused_callers_change_nothing(live: Live) -> None:
    settings, url, tokens, app = live
    before = _state(settings)
    viewer = {"authorization": f"Bearer {tokens[Role.VIEWER]}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        for method, path in _rows(app):
            need = EXPECTED[(method, path)]
            if method == "GET" or need is None:
                continue
            body = {
                "name": "intruder",
                "weights": {"v1": 1},
                "url": "http://127.0.0.1:9",
                "urls": [],
                "role": "admin",
            }
            assert http.request(method, _concrete(path), json=body).status_code == 401
            assert http.request(method, _concrete(path), json=body, headers=viewer).status_code == 403
    assert _state(settings) == before
