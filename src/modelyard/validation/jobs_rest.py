"""Validation with nobody in the loop over REST:

PUT    /api/v1/models/{name}/validation                         set the setup (deployer)
GET    /api/v1/models/{name}/validation                         read it (viewer)
DELETE /api/v1/models/{name}/validation                         forget it (deployer)
GET    /api/v1/models/{name}/validation/jobs                    the model's jobs, newest first (viewer)
GET    /api/v1/validation/jobs/{id}                             one job, with its log (viewer)
POST   /api/v1/models/{name}/versions/{version}/validation/run  queue a job now (deployer)
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInput
from modelyard.registry.refs import parse_version
from modelyard.validation.job_store import JobStore
from modelyard.validation.setup import SetupRequest
from modelyard.web.access import Role, acting_user
from modelyard.web.http import Handler, guarded_routes, in_thread, json_response, read_model

__all__ = ["MAX_SETUP_BODY", "validation_job_routes"]

MAX_SETUP_BODY = 2 * 1024 * 1024  # a setup with its policy inline
PREFIX = "/api/v1"


def _int(text: str | None, field: str, default: int) -> int:
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise InvalidInput(f"{field} must be a positive integer", field=field)
    return int(text)


class _Endpoints:
    def __init__(self, store: JobStore, wake: Callable[[], None]) -> None:
        self.store = store
        self.wake = wake

    async def put_setup(self, request: Request) -> Response:
        body = await read_model(request, SetupRequest, MAX_SETUP_BODY)
        name = request.path_params["name"]
        setup = await in_thread(
            self.store.put_setup,
            name,
            body,
            acting_user(request, request.headers.get("x-modelyard-user", "")),
        )
        return json_response(setup.model_dump(mode="json"))

    async def get_setup(self, request: Request) -> Response:
        setup = await in_thread(self.store.get_setup, request.path_params["name"])
        return json_response(setup.model_dump(mode="json"))

    async def clear_setup(self, request: Request) -> Response:
        await in_thread(self.store.clear_setup, request.path_params["name"])
        return Response(status_code=204)

    async def list_jobs(self, request: Request) -> Response:
        limit = _int(request.query_params.get("limit"), "limit", 50)
        jobs = await in_thread(self.store.list_jobs, request.path_params["name"], limit)
        return json_response({"jobs": [job.model_dump(mode="json") for job in jobs]})

    async def get_job(self, request: Request) -> Response:
        job = await in_thread(self.store.get_job, _int(request.path_params["id"], "id", 0))
        return json_response(job.model_dump(mode="json"))

    async def run_now(self, request: Request) -> Response:
        name, version = request.path_params["name"], parse_version(request.path_params["version"])
        job = await in_thread(
            self.store.run_now,
            name,
            version,
            acting_user(request, request.headers.get("x-modelyard-user", "")),
        )
        self.wake()
        return json_response(job.model_dump(mode="json"), 202)


def validation_job_routes(store: JobStore, wake: Callable[[], None] = lambda: None) -> list[Route]:
    """The routes, for the control-plane app; ``wake`` tells its runner a job was queued by hand."""
    e = _Endpoints(store, wake)
    m = f"{PREFIX}/models/{{name}}"
    table: list[tuple[str, str, Role, Handler]] = [
        ("PUT", f"{m}/validation", Role.DEPLOYER, e.put_setup),
        ("GET", f"{m}/validation", Role.VIEWER, e.get_setup),
        ("DELETE", f"{m}/validation", Role.DEPLOYER, e.clear_setup),
        ("GET", f"{m}/validation/jobs", Role.VIEWER, e.list_jobs),
        ("GET", f"{PREFIX}/validation/jobs/{{id}}", Role.VIEWER, e.get_job),
        ("POST", f"{m}/versions/{{version}}/validation/run", Role.DEPLOYER, e.run_now),
    ]
    return guarded_routes(table)
