"""The routing table's REST API under ``/api/v1/routes``: a thin Starlette adapter over :class:`RouteStore`.

The gateway's per-project API keys are part of the table and live under ``/api/v1/keys`` (admins):

    POST   /api/v1/keys       {"project", "name", "rate_per_s"?, "burst"?} -> 201, record + "key" (once)
    GET    /api/v1/keys       ?project=P&include_revoked=true              -> the records (never a key)
    DELETE /api/v1/keys/{id}                                               -> the revoked record
    DELETE /api/v1/keys       ?project=P   forget P's revoked keys: it is open again -> {"forgotten"}

Handlers parse the request, call the store in a worker thread (it is synchronous SQLAlchemy) and
render the route as JSON (``table.route_to_dict``). Errors use the registry's conventions: domain
errors through the one kind -> status table with a ``{"error", "kind", "field"}`` body, an invalid
body is a 400 naming the field, and a body over :data:`MAX_JSON_BODY` is a 413.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInput
from modelyard.routing.discovery import Announcement
from modelyard.routing.store import RouteStore
from modelyard.routing.table import route_to_dict
from modelyard.web.access import Role, acting_user
from modelyard.web.http import guarded_routes, in_thread, json_response, read_model

__all__ = ["KEYS", "MAX_JSON_BODY", "PREFIX", "endpoint_to_dict", "routes_endpoints"]

log = logging.getLogger("modelyard.gateway")
Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)
PREFIX = "/api/v1/routes"
KEYS = "/api/v1/keys"
MAX_JSON_BODY = 256 * 1024  # a route's settings are small; this is only a guard


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is a 400, not silently ignored


class WeightsBody(_Body):
    weights: dict[str, StrictInt]
    replace: StrictBool = True


class MirrorBody(_Body):
    fraction: StrictFloat = 1.0


class ReplicasBody(_Body):
    urls: list[StrictStr]


class ReplicaBody(_Body):
    url: StrictStr


class HeartbeatBody(_Body):
    url: StrictStr
    ready: StrictBool = True
    ttl_s: StrictFloat | StrictInt = 10.0


class OptionsBody(_Body):
    timeout_s: StrictFloat | None = None
    log_payload: StrictStr | None = None
    log_sample: StrictFloat | None = None
    target: dict[str, StrictStr] | None = None


class KeyBody(_Body):
    project: StrictStr
    name: StrictStr
    rate_per_s: StrictFloat | StrictInt | None = None
    burst: StrictInt | None = None
    created_by: StrictStr = ""  # recorded only when nobody checks who calls (access control off)


async def _body(request: Request, model: type[M]) -> M:
    return await read_model(request, model, MAX_JSON_BODY)


class _Endpoints:
    """One method per route; each is a few lines of parsing around one store call."""

    def __init__(self, store: RouteStore) -> None:
        self.store = store

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await in_thread(function, *args, **kwargs)

    async def _route(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
        return json_response(route_to_dict(await self._call(function, *args, **kwargs)))

    async def list_routes(self, request: Request) -> Response:
        return json_response([route_to_dict(route) for route in await self._call(self.store.list)])

    async def revision(self, request: Request) -> Response:
        return json_response({"revision": await self._call(self.store.revision)})

    async def get_route(self, request: Request) -> Response:
        return await self._route(self.store.get, *_names(request))

    async def delete_route(self, request: Request) -> Response:
        await self._call(self.store.delete, *_names(request))
        return Response(status_code=204)

    async def set_options(self, request: Request) -> Response:
        body = await _body(request, OptionsBody)
        return await self._route(self.store.set_options, *_names(request), **body.model_dump())

    async def set_weights(self, request: Request) -> Response:
        body = await _body(request, WeightsBody)
        return await self._route(self.store.set_weights, *_names(request), body.weights, replace=body.replace)

    async def remove_version(self, request: Request) -> Response:
        return await self._route(self.store.remove_version, *_names(request, version=True))

    async def set_mirror(self, request: Request) -> Response:
        body = await _body(request, MirrorBody)
        return await self._route(self.store.set_mirror, *_names(request, version=True), body.fraction)

    async def clear_mirror(self, request: Request) -> Response:
        return await self._route(self.store.clear_mirror, *_names(request, version=True))

    async def set_replicas(self, request: Request) -> Response:
        body = await _body(request, ReplicasBody)
        return await self._route(self.store.set_replicas, *_names(request, version=True), body.urls)

    async def add_replica(self, request: Request) -> Response:
        body = await _body(request, ReplicaBody)
        return await self._route(self.store.add_replica, *_names(request, version=True), body.url)

    async def remove_replica(self, request: Request) -> Response:
        url = request.query_params.get("url")
        if not url:
            raise InvalidInput("name the replica to remove as ?url=http://host:port", field="url")
        return await self._route(self.store.remove_replica, *_names(request, version=True), url)

    async def heartbeat(self, request: Request) -> Response:
        body = await _body(request, HeartbeatBody)
        names = _names(request, version=True)
        changed = await self._call(self.store.heartbeat, *names, body.url, ready=body.ready, ttl_s=body.ttl_s)
        return json_response({"changed": changed})

    async def deregister(self, request: Request) -> Response:
        url = request.query_params.get("url")
        if not url:
            raise InvalidInput("name the endpoint to remove as ?url=http://host:port", field="url")
        await self._call(self.store.deregister, *_names(request, version=True), url)
        return Response(status_code=204)

    async def list_endpoints(self, request: Request) -> Response:
        found = await self._call(self.store.endpoints)
        return json_response([endpoint_to_dict(endpoint) for endpoint in found])

    async def create_key(self, request: Request) -> Response:
        body = await _body(request, KeyBody)
        creator = acting_user(request, body.created_by)
        record, key = await self._call(
            self.store.create_key, body.project, body.name, body.rate_per_s, body.burst, created_by=creator
        )
        return json_response({**record.to_dict(), "key": key}, 201)

    async def list_keys(self, request: Request) -> Response:
        project = request.query_params.get("project") or None
        revoked = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
        found = await self._call(self.store.list_keys, project, include_revoked=revoked)
        return json_response([record.to_dict() for record in found])

    async def revoke_key(self, request: Request) -> Response:
        record = await self._call(self.store.revoke_key, request.path_params["id"])
        return json_response(record.to_dict())

    async def forget_keys(self, request: Request) -> Response:
        project = request.query_params.get("project")
        if not project:
            raise InvalidInput("name the project whose revoked keys to forget as ?project=P", field="project")
        return json_response({"forgotten": await self._call(self.store.forget_keys, project)})


def endpoint_to_dict(endpoint: Announcement) -> dict[str, Any]:
    """An announced replica as JSON (timestamps in ISO 8601, UTC)."""
    data = dataclasses.asdict(endpoint)
    data["heartbeat_at"] = endpoint.heartbeat_at.isoformat()
    data["expires_at"] = endpoint.expires_at.isoformat()
    return data


def _names(request: Request, *, version: bool = False) -> tuple[str, ...]:
    params = request.path_params
    names = (params["project"], params["model"])
    return (*names, params["version"]) if version else names


def routes_endpoints(store: RouteStore) -> list[Route]:
    """Every route of the routing-table API, for the control-plane app to mount."""
    e, m = _Endpoints(store), f"{PREFIX}/{{project}}/{{model}}"
    v = f"{m}/versions/{{version}}"
    table: list[tuple[str, str, Role, Handler]] = [
        ("GET", PREFIX, Role.VIEWER, e.list_routes),
        ("GET", f"{PREFIX}/_revision", Role.VIEWER, e.revision),  # one segment: never {project}/{model}
        ("GET", m, Role.VIEWER, e.get_route),
        ("PATCH", m, Role.DEPLOYER, e.set_options),
        ("DELETE", m, Role.DEPLOYER, e.delete_route),
        ("PUT", f"{m}/weights", Role.DEPLOYER, e.set_weights),
        ("DELETE", v, Role.DEPLOYER, e.remove_version),
        ("PUT", f"{v}/mirror", Role.DEPLOYER, e.set_mirror),
        ("DELETE", f"{v}/mirror", Role.DEPLOYER, e.clear_mirror),
        ("PUT", f"{v}/replicas", Role.DEPLOYER, e.set_replicas),
        ("POST", f"{v}/replicas", Role.DEPLOYER, e.add_replica),
        ("DELETE", f"{v}/replicas", Role.DEPLOYER, e.remove_replica),
        ("GET", f"{PREFIX}/_endpoints", Role.VIEWER, e.list_endpoints),
        ("PUT", f"{v}/endpoints", Role.DEPLOYER, e.heartbeat),
        ("DELETE", f"{v}/endpoints", Role.DEPLOYER, e.deregister),
        ("POST", KEYS, Role.ADMIN, e.create_key),
        ("GET", KEYS, Role.ADMIN, e.list_keys),
        ("DELETE", f"{KEYS}/{{id}}", Role.ADMIN, e.revoke_key),
        ("DELETE", KEYS, Role.ADMIN, e.forget_keys),
    ]
    return guarded_routes(table)
