"""Open Inference Protocol (KServe V2) over REST: a thin adapter over :class:`DataPlane`.

Also the Triton extensions tritonclient calls: model configuration and the model repository.
Health answers carry the result in the status code (200 / 503) with a small JSON body.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelyard.errors import Forbidden, InvalidInput, Unauthenticated
from modelyard.sdk import ModelMetadata, TensorSpec
from modelyard.server.dataplane import DataPlane
from modelyard.server.protocols.metered import metered
from modelyard.server.protocols.oip_infer import InferEndpoint
from modelyard.server.settings import Settings
from modelyard.web.http import json_response, read_body

__all__ = ["oip_routes"]

PROTOCOL = "v2"
_NOT_READY = 503


def oip_routes(plane: DataPlane) -> list[Route]:
    m = plane.metrics
    infer = _RoutedInfer(plane)
    meta = metered(m, PROTOCOL, _model_metadata(plane), observe=False)
    ready = metered(m, PROTOCOL, _model_ready(plane), observe=False)
    config = metered(m, PROTOCOL, _model_config(plane), observe=False)
    server = metered(m, PROTOCOL, _server_metadata(plane), observe=False)
    return [
        Route("/v2", server, methods=["GET"]),
        Route("/v2/", server, methods=["GET"]),
        Route("/v2/health/live", _health(plane.live), methods=["GET"]),
        Route("/v2/health/ready", _health(plane.ready), methods=["GET"]),
        Route("/v2/models/{model}", meta, methods=["GET"]),
        Route("/v2/models/{model}/versions/{version}", meta, methods=["GET"]),
        Route("/v2/models/{model}/ready", ready, methods=["GET"]),
        Route("/v2/models/{model}/versions/{version}/ready", ready, methods=["GET"]),
        Route("/v2/models/{model}/config", config, methods=["GET"]),
        Route("/v2/models/{model}/versions/{version}/config", config, methods=["GET"]),
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/repository/index", metered(m, PROTOCOL, _index(plane), observe=False), methods=["POST"]),
        Route(
            "/v2/repository/models/{model}/{action:str}",
            metered(m, PROTOCOL, _load_unload(plane), observe=False),
            methods=["POST"],
        ),
    ]


class _RoutedInfer:
    """The infer endpoint as an ASGI app for the router (the app's fast path normally gets there first)."""

    def __init__(self, plane: DataPlane) -> None:
        self.endpoint = InferEndpoint(plane)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        await self.endpoint(scope, receive, send, params["model"], params.get("version"))


def _health(check: Any) -> Any:
    async def handler(request: Request) -> Response:
        ok = bool(check())
        key = "live" if request.url.path.endswith("live") else "ready"
        return json_response({key: ok}, status=200 if ok else _NOT_READY)

    return handler


def _server_metadata(plane: DataPlane) -> Any:
    async def handler(request: Request) -> Response:
        return json_response(plane.server_metadata())

    return handler


def _model_metadata(plane: DataPlane) -> Any:
    async def handler(request: Request) -> Response:
        name = request.path_params["model"]
        meta = plane.model_metadata(name, request.path_params.get("version"))
        return json_response(
            {
                "name": meta.name,
                "versions": plane.model_versions(name),
                "platform": meta.platform,
                "inputs": [spec.to_dict() for spec in meta.inputs],
                "outputs": [spec.to_dict() for spec in meta.outputs],
                "parameters": {"labels": dict(meta.labels)} if meta.labels else {},
            }
        )

    return handler


def _model_ready(plane: DataPlane) -> Any:
    async def handler(request: Request) -> Response:
        name = request.path_params["model"]
        ok = plane.model_ready(name, request.path_params.get("version"))
        return json_response({"name": name, "ready": ok}, status=200 if ok else _NOT_READY)

    return handler


def _model_config(plane: DataPlane) -> Any:
    async def handler(request: Request) -> Response:
        runtime = plane.model(request.path_params["model"], request.path_params.get("version"))
        batch = runtime.batch_spec  # in force: off when the inputs have no batch dimension
        max_batch = batch.max_batch_size if batch is not None and batch.stack else 0
        return json_response(
            triton_config(runtime.metadata, max_batch, batch.max_latency_ms if batch else None)
        )

    return handler


def triton_config(meta: ModelMetadata, max_batch_size: int, max_latency_ms: float | None) -> dict[str, Any]:
    """The model as Triton's ModelConfig JSON (dims exclude the batch dimension when batching)."""

    def tensor(spec: TensorSpec, key: str) -> dict[str, Any]:
        dims = list(spec.shape[1:] if max_batch_size and spec.shape[:1] == (-1,) else spec.shape)
        datatype = "STRING" if spec.datatype == "BYTES" else spec.datatype
        return {"name": spec.name, key: f"TYPE_{datatype}", "dims": dims}

    config: dict[str, Any] = {
        "name": meta.name,
        "platform": meta.platform,
        "backend": meta.platform.split("_")[0],
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_batch_size,
        "input": [tensor(s, "data_type") for s in meta.inputs],
        "output": [tensor(s, "data_type") for s in meta.outputs],
        "parameters": {k: {"string_value": v} for k, v in meta.labels.items()},
    }
    if max_batch_size and max_latency_ms is not None:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(max_latency_ms * 1000)}
    return config


def _index(plane: DataPlane) -> Any:
    async def handler(request: Request) -> Response:
        body = await read_body(request, 1 << 20)
        wanted = _optional_json(body).get("ready")
        rows = [
            {"name": s.name, "version": s.version, "state": s.state, "reason": s.reason}
            for s in plane.index()
            if wanted is None or (s.state == "READY") == bool(wanted)
        ]
        return json_response(rows)

    return handler


class ModelControl:
    """Who may load and unload models: nobody unless the server enables it, then only with its token.

    Unloading makes a pod unready for good (it stays live, so it is never restarted): one request
    from anyone who can reach the port would take a replica out. Off, it is 403 (the route exists,
    the server refuses: a 404 would read as "no such model" to tritonclient); on, every request
    must carry ``Authorization: Bearer <token>`` (401 without it), compared in constant time.
    """

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.model_control
        token = settings.model_control_token
        self._token = token.encode() if token else None

    def check(self, authorization: str | None) -> None:
        """Return when the request may load or unload; raise Forbidden or Unauthenticated."""
        if not self.enabled or self._token is None:
            raise Forbidden(
                "model control (load/unload) is off on this server; start it with --model-control"
                " and a token (--model-control-token or MODELYARD_MODEL_CONTROL_TOKEN) to allow it"
            )
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthenticated(
                "model control needs the header 'Authorization: Bearer <token>'", field="authorization"
            )
        if not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise Unauthenticated("the model-control token is not valid", field="authorization")


def _load_unload(plane: DataPlane) -> Any:
    control = ModelControl(plane.settings)

    async def handler(request: Request) -> Response:
        control.check(request.headers.get("authorization"))  # before anything, even a 404
        name, action = request.path_params["model"], request.path_params["action"]
        _optional_json(await read_body(request, 1 << 20))
        if action == "load":
            await plane.load_model(name)
        elif action == "unload":
            await plane.unload_model(name)
        else:
            raise InvalidInput(f"unknown repository action '{action}' (use load or unload)", field="action")
        return json_response({"name": name, action: True})

    return handler


def _optional_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    return doc
