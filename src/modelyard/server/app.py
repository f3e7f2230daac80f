"""The composition root: build the model server's ASGI app from one :class:`Settings`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from modelyard import __version__
from modelyard.package.loading import spec_from_config
from modelyard.sdk import ModelSpec
from modelyard.server import DataPlane, ModelRepository, ModelRuntime, RuntimeOptions, ServerMetrics, Settings
from modelyard.server.protocols import oip_routes, probe_routes, tfserving_routes
from modelyard.server.protocols.oip_infer import InferEndpoint, match_infer_path
from modelyard.web.http import http_error

__all__ = ["ModelServerApp", "build_app", "build_dataplane"]


def build_dataplane(settings: Settings, models: Iterable[ModelSpec] = ()) -> DataPlane:
    """The data plane for ``settings.models`` (files) plus ``models`` (specs built in code)."""
    metrics = ServerMetrics()
    options = RuntimeOptions(
        max_queue=settings.max_queue, workers=settings.workers_per_model, timeout_s=settings.request_timeout_s
    )
    repository = ModelRepository()
    specs = [*(spec_from_config(config, settings) for config in settings.models), *models]
    for spec in specs:
        repository.add(ModelRuntime(spec, options, on_batch=metrics.observe_batch))
    return DataPlane(settings, repository, metrics, __version__)


def build_app(settings: Settings, models: Iterable[ModelSpec] = ()) -> ModelServerApp:
    """The model server as an ASGI app. Models load and warm up in the app's lifespan."""
    plane = build_dataplane(settings, models)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await plane.start()
        yield
        await plane.stop()

    app = ModelServerApp(
        InferEndpoint(plane),
        routes=[*probe_routes(plane), *oip_routes(plane), *tfserving_routes(plane)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    # Clients never follow redirects (tritonclient): "/v2" and "/v2/" are both routed explicitly.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    app.state.dataplane = plane
    return app


class ModelServerApp(Starlette):
    """Starlette, with the inference hot path dispatched before the middleware stack and router."""

    def __init__(self, infer: InferEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.infer = infer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = match_infer_path(scope["path"])
            if target is not None:
                await self.infer(scope, receive, send, *target)
                return
        await super().__call__(scope, receive, send)
