"""The deploy API under ``/api/v1/deploy``: a thin Starlette adapter over :class:`DeployService`.

    POST /api/v1/deploy/diff            body: the deploy file (YAML)  -> {"plan", "summary", "empty", "drift"}
    POST /api/v1/deploy/apply           body: the deploy file (YAML)  -> the record, drift, log, ok/error
    GET  /api/v1/deploy/status          -> the last applied record, a running one, every replica
    GET  /api/v1/deploy/history         ?limit=&before=                -> records, newest first
    GET  /api/v1/deploy/history/{id}    -> one record, with the file's text
    POST /api/v1/deploy/rollback/{id}   -> applies that record's file again

Who applies is the caller's token (``web/access.py``; with access control off, the
``x-modelyard-user`` header), where from from ``?source=``. Viewers get a record's file with every
``env`` value redacted. The service
is synchronous and an apply can take minutes, so every call runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.deploy.file import MAX_FILE_BYTES
from modelyard.deploy.redact import redact_env
from modelyard.deploy.service import DeployService
from modelyard.errors import InvalidInput
from modelyard.web.access import Role, acting_user, identity_of
from modelyard.web.http import guarded_routes, in_thread, json_response, read_body

__all__ = ["MAX_FILE_BYTES", "PREFIX", "deploy_endpoints"]

PREFIX = "/api/v1/deploy"
Handler = Callable[[Request], Awaitable[Response]]


class _Endpoints:
    def __init__(self, service: DeployService) -> None:
        self.service = service

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await in_thread(function, *args, **kwargs)

    async def _text(self, request: Request) -> str:
        raw = await read_body(request, MAX_FILE_BYTES)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise InvalidInput("the deploy file must be UTF-8 text", field="body") from None

    async def diff(self, request: Request) -> Response:
        source = request.query_params.get("source", "<deploy file>")
        plan, text = await self._call(self.service.diff, await self._text(request), source)
        drift = [str(item) for item in plan.drift]
        return json_response({"plan": text, "summary": plan.summary, "empty": plan.empty, "drift": drift})

    async def apply(self, request: Request) -> Response:
        text = await self._text(request)
        user = acting_user(request, request.headers.get("x-modelyard-user", ""))
        source = request.query_params.get("source", "")
        outcome = await self._call(self.service.apply, text, user=user, source=source)
        return json_response(outcome.to_dict(), status=200 if outcome.result.ok else 422)

    async def rollback(self, request: Request) -> Response:
        user = acting_user(request, request.headers.get("x-modelyard-user", ""))
        outcome = await self._call(self.service.rollback, _id(request.path_params["id"]), user=user)
        return json_response(outcome.to_dict(), status=200 if outcome.result.ok else 422)

    async def status(self, request: Request) -> Response:
        return json_response(await self._call(self.service.status))

    async def history(self, request: Request) -> Response:
        limit = _id(request.query_params.get("limit", "50"), "limit")
        before = request.query_params.get("before")
        found = await self._call(self.service.history, limit, _id(before, "before") if before else None)
        return json_response([record.to_dict(file_text=False) for record in found])

    async def record(self, request: Request) -> Response:
        record = (await self._call(self.service.store.get, _id(request.path_params["id"]))).to_dict()
        if identity_of(request).role < Role.DEPLOYER:  # env values may hold secrets: viewers see names
            record["file_text"] = redact_env(record.get("file_text") or "")
        return json_response(record)


def _id(text: str, field: str = "apply") -> int:
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise InvalidInput(f"{field} must be a positive integer, not {text!r}", field=field)
    return int(text)


def deploy_endpoints(service: DeployService) -> list[Route]:
    """Every route of the deploy API, for the control-plane app to mount."""
    e = _Endpoints(service)
    table: list[tuple[str, str, Role, Handler]] = [
        ("POST", f"{PREFIX}/diff", Role.DEPLOYER, e.diff),
        ("POST", f"{PREFIX}/apply", Role.DEPLOYER, e.apply),
        ("GET", f"{PREFIX}/status", Role.VIEWER, e.status),
        ("GET", f"{PREFIX}/history", Role.VIEWER, e.history),
        ("GET", f"{PREFIX}/history/{{id}}", Role.VIEWER, e.record),
        ("POST", f"{PREFIX}/rollback/{{id}}", Role.DEPLOYER, e.rollback),
    ]
    return guarded_routes(table)
