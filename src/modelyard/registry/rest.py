"""The registry's REST API under ``/api/v1``: a thin Starlette adapter over :class:`Registry`.

Handlers parse the request, call the core in a worker thread (it is synchronous: SQLAlchemy and
fsspec), and render JSON. Domain errors go through ``modelyard.web.errors``, the same
kind -> status table and ``{"error", "kind", "field"}`` body the model server uses.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from modelyard.errors import (
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
)
from modelyard.registry.core import Registry
from modelyard.registry.openapi import AliasMove, ModelCreate, ModelUpdate, openapi_document
from modelyard.registry.refs import parse_version
from modelyard.registry.types import NewValidation, NewVersion, RegisterRequest
from modelyard.registry.uploads import UploadAborted, UploadGate
from modelyard.web.access import Role, acting_user
from modelyard.web.http import error_response, guarded_routes, in_thread, json_response, read_model

__all__ = ["MAX_JSON_BODY", "PREFIX", "content_disposition", "registry_routes", "routes"]

log = logging.getLogger("modelyard.registry")
Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)
PREFIX = "/api/v1"
MAX_JSON_BODY = 1024 * 1024  # JSON request bodies (metadata only: artifacts go to /artifacts)


def _dump(value: BaseModel | list[Any]) -> Any:
    if isinstance(value, list):
        return [item.model_dump(mode="json") if isinstance(item, BaseModel) else item for item in value]
    return value.model_dump(mode="json")


async def _body(request: Request, model: type[M]) -> M:
    return await read_model(request, model, MAX_JSON_BODY)


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise InvalidInput(f"query parameter {name} must be an integer", field=name)
    return int(value)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


class _Endpoints:
    """One method per route; each is a few lines of parsing around one core call."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        settings = registry.settings
        self.uploads = UploadGate(settings.max_concurrent_uploads, settings.upload_idle_timeout_s)

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await in_thread(function, *args, **kwargs)

    async def list_models(self, request: Request) -> Response:
        return await self._page(request, self.registry.list_models, request.query_params.get("search"))

    async def create_model(self, request: Request) -> Response:
        body = await _body(request, ModelCreate)
        return json_response(
            _dump(await self._call(self.registry.create_model, body.name, body.description)), 201
        )

    async def get_model(self, request: Request) -> Response:
        return json_response(_dump(await self._call(self.registry.get_model, request.path_params["name"])))

    async def update_model(self, request: Request) -> Response:
        body = await _body(request, ModelUpdate)
        model = await self._call(self.registry.update_model, request.path_params["name"], body.description)
        return json_response(_dump(model))

    async def delete_model(self, request: Request) -> Response:
        await self._call(self.registry.delete_model, request.path_params["name"])
        return Response(status_code=204)

    async def list_versions(self, request: Request) -> Response:
        name, search = request.path_params["name"], request.query_params.get("search")
        return await self._page(request, self.registry.list_versions, name, search)

    async def register(self, request: Request) -> Response:
        body = await _body(request, RegisterRequest)
        fields = body.model_dump(exclude={"sha256", "aliases"})
        spec = NewVersion.model_validate({**fields, "user": acting_user(request, body.user)})
        name = request.path_params["name"]
        version = await self._call(self.registry.register, name, body.sha256, spec, aliases=body.aliases)
        return json_response(_dump(version), 201)

    async def get_version(self, request: Request) -> Response:
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        return json_response(_dump(await self._call(self.registry.get_version, name, number)))

    async def delete_version(self, request: Request) -> Response:
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        await self._call(self.registry.delete_version, name, number, force=_flag(request, "force"))
        return Response(status_code=204)

    async def download(self, request: Request) -> Response:
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        version = await self._call(self.registry.get_version, name, number)
        if await self._call(self.registry.store.stat, version.sha256) is None:  # 404 now, not mid-stream
            raise NotFound(f"the artifact of {version.ref} is missing from the store", field="sha256")
        headers = {
            "content-length": str(version.size),
            "x-content-sha256": version.sha256,
            "content-disposition": content_disposition(version.filename),
        }
        chunks = self.registry.artifact_chunks(version)
        return StreamingResponse(chunks, headers=headers, media_type="application/octet-stream")

    async def upload(self, request: Request) -> Response:
        """Stream the body into the store. Beyond ``max_concurrent_uploads`` the answer is 503 before
        the body is read; a body that stalls for ``upload_idle_timeout_s`` is dropped (400). Both
        close the connection, so a client that stopped sending holds nothing here."""
        limit = self.registry.settings.max_upload_bytes
        declared = _declared_length(request)
        if declared is not None and declared > limit:
            raise PayloadTooLarge(declared, limit)
        expected = request.headers.get("x-content-sha256")
        upload = functools.partial(self.registry.upload, expected_size=declared, expected_sha256=expected)
        try:
            with self.uploads.admit():
                stored = await self.uploads.stream(request.stream(), upload)
        except (Overloaded, UploadAborted) as exc:
            response = error_response(exc)
            response.headers["connection"] = "close"  # uvicorn then closes it: no unread body lingers
            return response
        return json_response(_dump(stored), 201)

    async def collect_garbage(self, request: Request) -> Response:
        older_than = _int_param(request, "older_than_s")
        seconds = 3600 if older_than is None else older_than
        if not 0 <= seconds <= 10**10:  # about 300 years: a timedelta cannot hold every 18-digit value
            raise InvalidInput("older_than_s must be between 0 and 10000000000", field="older_than_s")
        removed = await self._call(
            self.registry.collect_garbage, timedelta(seconds=seconds), dry_run=_flag(request, "dry_run")
        )
        return json_response(_dump(removed))

    async def list_aliases(self, request: Request) -> Response:
        return json_response(_dump(await self._call(self.registry.list_aliases, request.path_params["name"])))

    async def get_alias(self, request: Request) -> Response:
        params = request.path_params
        return json_response(
            _dump(await self._call(self.registry.get_alias, params["name"], params["alias"]))
        )

    async def set_alias(self, request: Request) -> Response:
        body = await _body(request, AliasMove)
        params = request.path_params
        alias = await self._call(
            self.registry.set_alias,
            params["name"],
            params["alias"],
            body.version,
            user=acting_user(request, body.user),
            expected_revision=body.expected_revision,
            require_validation=body.require_validation,
        )
        return json_response(_dump(alias))

    async def delete_alias(self, request: Request) -> Response:
        params = request.path_params
        await self._call(
            self.registry.delete_alias,
            params["name"],
            params["alias"],
            user=acting_user(request, request.query_params.get("user", "")),
            expected_revision=_int_param(request, "expected_revision"),
        )
        return Response(status_code=204)

    async def history(self, request: Request) -> Response:
        name, alias = request.path_params["name"], request.query_params.get("alias")
        return await self._page(request, self.registry.alias_history, name, alias)

    async def _page(self, request: Request, listing: Callable[..., Any], *args: Any) -> Response:
        """One page of a listing: ``listing(*args, page_size, page_token)`` from the query string."""
        token = request.query_params.get("page_token")
        page = await self._call(listing, *args, _int_param(request, "page_size"), token)
        return json_response(_dump(page))

    async def resolve(self, request: Request) -> Response:
        ref = request.query_params.get("ref")
        if not ref:
            raise InvalidInput("give the reference to resolve as ?ref=name@alias", field="ref")
        return json_response(_dump(await self._call(self.registry.resolve, ref)))

    async def list_validations(self, request: Request) -> Response:
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        limit = _int_param(request, "limit")
        found = await self._call(self.registry.list_validations, name, number, 20 if limit is None else limit)
        return json_response(_dump(found))

    async def record_validation(self, request: Request) -> Response:
        body = await _body(request, NewValidation)
        verdict = body.model_copy(update={"user": acting_user(request, body.user)})
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        recorded = await self._call(self.registry.record_validation, name, number, verdict)
        return json_response(_dump(recorded), 201)

    async def list_usages(self, request: Request) -> Response:
        name, number = request.path_params["name"], parse_version(request.path_params["version"])
        return json_response(_dump(await self._call(self.registry.list_usages, name, number)))

    async def mark_used(self, request: Request) -> Response:
        params = request.path_params
        number = parse_version(params["version"])
        usage = await self._call(self.registry.mark_used, params["name"], number, params["consumer"])
        return json_response(_dump(usage))

    async def unmark_used(self, request: Request) -> Response:
        params = request.path_params
        number = parse_version(params["version"])
        await self._call(self.registry.unmark_used, params["name"], number, params["consumer"])
        return Response(status_code=204)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one as RFC 5987 ``filename*``."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidInput("invalid Content-Length", field="content-length")
    return int(declared)


def routes(endpoints: _Endpoints) -> list[Route]:
    """Every route of the API; ``openapi.OPERATIONS`` documents exactly these (a test checks)."""
    e, m, v = endpoints, f"{PREFIX}/models/{{name}}", f"{PREFIX}/models/{{name}}/versions/{{version}}"
    table: list[tuple[str, str, Role, Handler]] = [
        ("GET", f"{PREFIX}/models", Role.VIEWER, e.list_models),
        ("POST", f"{PREFIX}/models", Role.DEPLOYER, e.create_model),
        ("GET", m, Role.VIEWER, e.get_model),
        ("PATCH", m, Role.DEPLOYER, e.update_model),
        ("DELETE", m, Role.ADMIN, e.delete_model),
        ("GET", f"{m}/versions", Role.VIEWER, e.list_versions),
        ("POST", f"{m}/versions", Role.DEPLOYER, e.register),
        ("GET", v, Role.VIEWER, e.get_version),
        ("DELETE", v, Role.ADMIN, e.delete_version),
        ("GET", f"{v}/artifact", Role.VIEWER, e.download),
        ("GET", f"{v}/validations", Role.VIEWER, e.list_validations),
        ("POST", f"{v}/validations", Role.DEPLOYER, e.record_validation),
        ("GET", f"{v}/usages", Role.VIEWER, e.list_usages),
        ("PUT", f"{v}/usages/{{consumer:path}}", Role.DEPLOYER, e.mark_used),
        ("DELETE", f"{v}/usages/{{consumer:path}}", Role.DEPLOYER, e.unmark_used),
        ("GET", f"{m}/aliases", Role.VIEWER, e.list_aliases),
        ("GET", f"{m}/aliases/{{alias}}", Role.VIEWER, e.get_alias),
        ("PUT", f"{m}/aliases/{{alias}}", Role.DEPLOYER, e.set_alias),
        ("DELETE", f"{m}/aliases/{{alias}}", Role.DEPLOYER, e.delete_alias),
        ("GET", f"{m}/history", Role.VIEWER, e.history),
        ("POST", f"{PREFIX}/artifacts", Role.DEPLOYER, e.upload),
        ("GET", f"{PREFIX}/resolve", Role.VIEWER, e.resolve),
        ("POST", f"{PREFIX}/gc", Role.ADMIN, e.collect_garbage),
    ]
    return guarded_routes(table)


def registry_routes(registry: Registry) -> list[BaseRoute]:
    """The registry's routes on an open ``registry``, its OpenAPI document among them; the control
    plane (``modelyard.control.app``) serves them beside the other planes'."""

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    document = guarded_routes([("GET", f"{PREFIX}/openapi.json", Role.VIEWER, openapi)])
    return [*routes(_Endpoints(registry)), *document]
