"""The rollouts API under ``/api/v1/rollouts``: a thin Starlette adapter over the controller.

    GET  /api/v1/rollouts                 ?limit=&before=  -> {"rollouts": [...], "next"}, newest first
    GET  /api/v1/rollouts/latest                        -> {"rollouts": [...]}: each model's newest
    GET  /api/v1/rollouts/events          ?limit=&before=  -> {"events": [...], "next"}: every
                                                           rollout's transitions, newest first
    GET  /api/v1/rollouts/{project}/{model}             -> the model's newest rollout, gates now, events
    POST /api/v1/rollouts/{project}/{model}/promote     body {"reason"?} -> 100 % to the candidate now
    POST /api/v1/rollouts/{project}/{model}/abort       -> traffic back to the baseline now
    POST /api/v1/rollouts/{project}/{model}/pause       -> hold the step's traffic
    POST /api/v1/rollouts/{project}/{model}/resume      -> the step starts over
    POST /api/v1/rollouts/{project}/{model}/retry       -> a rolled-back or aborted rollout anew

Reads need a viewer, actions a deployer; an action is recorded under the caller's token name (with
access control off, the ``x-modelyard-user`` header). A page's ``next`` is the ``before`` that
reads the page after it (null after the last), so a reader can go back through every rollout and
every transition.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInput
from modelyard.rollout import status
from modelyard.rollout.controller import Controller
from modelyard.rollout.store import MAX_LIST
from modelyard.routing.table import check_name
from modelyard.web.access import Role, acting_user
from modelyard.web.http import guarded_routes, in_thread, json_response, read_model

__all__ = ["PREFIX", "rollout_routes"]

PREFIX = "/api/v1/rollouts"
MAX_JSON_BODY = 16 * 1024
Handler = Callable[[Request], Awaitable[Response]]


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr = Field(default="", max_length=500)


class _Endpoints:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def listing(self, request: Request) -> Response:
        limit, before = _page(request)
        return json_response(await in_thread(status.listing, self.controller, limit, before))

    async def latest(self, request: Request) -> Response:
        return json_response({"rollouts": await in_thread(status.latest, self.controller)})

    async def events(self, request: Request) -> Response:
        limit, before = _page(request)
        return json_response(await in_thread(status.transitions, self.controller, limit, before))

    async def show(self, request: Request) -> Response:
        project, model = _route(request)
        return json_response(await in_thread(status.show, self.controller, project, model))

    def action(self, name: str) -> Handler:
        async def act(request: Request) -> Response:
            project, model = _route(request)
            body = await read_model(request, ActionBody, MAX_JSON_BODY)
            user = acting_user(request, request.headers.get("x-modelyard-user", ""))
            function: Callable[..., Any] = getattr(self.controller, name)
            await in_thread(function, project, model, user=user, reason=body.reason)
            return json_response(await in_thread(status.show, self.controller, project, model))

        act.__name__ = name
        return act


def _page(request: Request) -> tuple[int, int | None]:
    """``limit`` (default 50) and ``before`` (an id; none: from the newest) of a listing."""
    limit, before = request.query_params.get("limit", "50"), request.query_params.get("before")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIST}", field="limit")
    if before is not None and (not before.isdigit() or int(before) < 1):
        raise InvalidInput("before must be a positive integer (an id)", field="before")
    return int(limit), None if before is None else int(before)


def _route(request: Request) -> tuple[str, str]:
    project = check_name(request.path_params["project"], "project")
    return project, check_name(request.path_params["model"], "model")


def rollout_routes(controller: Controller) -> list[Route]:
    """Every route of the rollouts API, for the control-plane app to mount."""
    e = _Endpoints(controller)
    one = f"{PREFIX}/{{project}}/{{model}}"
    table: list[tuple[str, str, Role, Handler]] = [
        ("GET", PREFIX, Role.VIEWER, e.listing),
        ("GET", f"{PREFIX}/latest", Role.VIEWER, e.latest),
        ("GET", f"{PREFIX}/events", Role.VIEWER, e.events),
        ("GET", one, Role.VIEWER, e.show),
        *(("POST", f"{one}/{name}", Role.DEPLOYER, e.action(name)) for name in ACTIONS),
    ]
    return guarded_routes(table)


ACTIONS = ("promote", "abort", "pause", "resume", "retry")
