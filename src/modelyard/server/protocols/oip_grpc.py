"""Open Inference Protocol over gRPC (``inference.GRPCInferenceService``): a thin adapter over
:class:`DataPlane`, beside REST on the same event loop, so both share the models and their batchers.

The six OIP RPCs, and the Triton extensions tritonclient.grpc calls on the same service:
``ModelStreamInfer`` and the model repository (index open; load and unload under the same
:class:`ModelControl` rule as REST, the token in the ``authorization`` metadata). ``ModelConfig``,
statistics, shared memory and tracing answer UNIMPLEMENTED. Errors take their code from the one
table (:data:`modelyard.web.errors.GRPC_CODE_BY_KIND`); the kind and the field at fault travel in
the trailing metadata (``modelyard-error-kind``, ``modelyard-error-field``).

grpc is imported here and nowhere else but :mod:`.grpc_v2`: a server started without a gRPC
port never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn, cast

import grpc
from grpc import aio

from modelyard.errors import ErrorKind, ModelNotFound, ModelyardError
from modelyard.server.dataplane import DataPlane
from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from modelyard.server.protocols.grpc_v2.grpc_predict_v2_pb2_grpc import (
    add_GRPCInferenceServiceServicer_to_server,
)
from modelyard.server.protocols.oip_grpc_codec import decode_infer_request, encode_infer_response
from modelyard.server.protocols.oip_rest import ModelControl
from modelyard.web.errors import GRPC_CODE_BY_KIND, STATUS_BY_KIND, error_headers

__all__ = ["GrpcListener", "InferenceServicer"]

log = logging.getLogger("modelyard.server")

PROTOCOL = "grpc"
# What the data plane advertises that this adapter does not serve (Triton's ModelConfig message
# is a schema of its own; REST has the configuration).
_NOT_OVER_GRPC = frozenset({"model_configuration"})


class InferenceServicer:
    """The RPCs, by the names the generated ``add_..._to_server`` looks up."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.control = ModelControl(plane.settings)
        self._in_flight = plane.metrics.in_flight.labels(PROTOCOL)

    # -- health and metadata -------------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        try:  # an unknown model is simply not ready, as Triton and tritonclient.http see it
            ready = self.plane.model_ready(request.name, request.version or None)
        except ModelNotFound:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        meta = self.plane.server_metadata()
        extensions = [e for e in cast("list[str]", meta["extensions"]) if e not in _NOT_OVER_GRPC]
        return pb.ServerMetadataResponse(
            name=str(meta["name"]), version=str(meta["version"]), extensions=extensions
        )

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        try:
            meta = self.plane.model_metadata(request.name, request.version or None)
            return pb.ModelMetadataResponse(
                name=meta.name,
                versions=self.plane.model_versions(request.name),
                platform=meta.platform,
                inputs=[_tensor_metadata(s.name, s.datatype, s.shape) for s in meta.inputs],
                outputs=[_tensor_metadata(s.name, s.datatype, s.shape) for s in meta.outputs],
            )
        except ModelyardError as exc:
            await abort(context, exc)

    # -- inference -----------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        started = time.perf_counter()
        self._in_flight.inc()
        try:
            answer = await self._infer(request, context.time_remaining())
        except Exception as exc:
            error = _domain_error(exc, request.model_name)
            self._observe(request.model_name, error, started)
            await abort(context, error)
        finally:
            self._in_flight.dec()
        self._observe(request.model_name, None, started)
        return answer

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request computed as it arrives (so a stream's requests batch together), each answer
        written in arrival order; an error is an ``error_message`` and the stream goes on.

        At most ``max_queue`` answers wait to be written: past that the stream is read no further
        until the client takes its answers (gRPC flow control holds the client back).
        """
        window = asyncio.Semaphore(self.plane.settings.max_queue)
        pending: asyncio.Queue[asyncio.Future[pb.ModelStreamInferResponse] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for message in requests:
                    await window.acquire()
                    pending.put_nowait(asyncio.ensure_future(self._stream_one(message, context)))
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await pending.get()) is not None:
                yield await answer
                window.release()
            await reader  # a read that failed fails the stream
        finally:
            reader.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if left is not None:
                    left.cancel()

    async def _stream_one(self, message: pb.ModelInferRequest, context: Any) -> pb.ModelStreamInferResponse:
        started = time.perf_counter()
        self._in_flight.inc()
        try:
            answer = await self._infer(message, context.time_remaining())
        except Exception as exc:
            error = _domain_error(exc, message.model_name)
            self._observe(message.model_name, error, started)
            empty = pb.ModelInferResponse(model_name=message.model_name, id=message.id)
            return pb.ModelStreamInferResponse(error_message=error.message, infer_response=empty)
        finally:
            self._in_flight.dec()
        self._observe(message.model_name, None, started)
        return pb.ModelStreamInferResponse(infer_response=answer)

    async def _infer(self, message: pb.ModelInferRequest, deadline_s: float | None) -> pb.ModelInferResponse:
        name, version = message.model_name, message.model_version or None
        self.plane.model(name, version)  # NOT_FOUND before decoding tensors we would not use
        request, raw = decode_infer_request(message, deadline_s)
        result = await self.plane.infer(name, version, request)
        return encode_infer_response(result, raw)

    def _observe(self, model: str, error: ModelyardError | None, started: float) -> None:
        status = 200 if error is None else STATUS_BY_KIND[error.kind]
        if error is not None and error.kind is ErrorKind.NOT_FOUND:
            model = ""  # never let arbitrary names become metric label values
        self.plane.metrics.observe_request(model, PROTOCOL, status, time.perf_counter() - started)

    # -- model repository ----------------------------------------------------------------------

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        Index = pb.RepositoryIndexResponse.ModelIndex
        rows = [
            Index(name=s.name, version=s.version, state=s.state, reason=s.reason)
            for s in self.plane.index()
            if not request.ready or s.state == "READY"  # proto3: "ready" unset reads false: all
        ]
        return pb.RepositoryIndexResponse(models=rows)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        try:
            self.control.check(_authorization(context))  # before anything, even NOT_FOUND
            await self.plane.load_model(request.model_name)
        except ModelyardError as exc:
            await abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            self.control.check(_authorization(context))
            await self.plane.unload_model(request.model_name)
        except ModelyardError as exc:
            await abort(context, exc)
        return pb.RepositoryModelUnloadResponse()


def _tensor_metadata(name: str, datatype: str, shape: tuple[int, ...]) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(name=name, datatype=datatype, shape=shape)


def _authorization(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


def _domain_error(exc: Exception, model: str) -> ModelyardError:
    if isinstance(exc, ModelyardError):
        return exc
    log.exception("unhandled error on gRPC ModelInfer for model %r", model)
    return ModelyardError("internal server error")


async def abort(context: Any, error: ModelyardError) -> NoReturn:
    """End the call with the error's code from the one table; its kind and field as trailers."""
    trailers = [("modelyard-error-kind", error.kind.value)]
    if error.field is not None:
        trailers.append(("modelyard-error-field", error.field))
    trailers += list(error_headers(error).items())  # retry-after, www-authenticate
    context.set_trailing_metadata(tuple(trailers))
    await context.abort(grpc.StatusCode[GRPC_CODE_BY_KIND[error.kind]], error.message)
    raise AssertionError("context.abort returned")  # it raises; this line is never reached


class _GenericOnly:
    """What the generated ``add_..._to_server`` sees as the server: it keeps the generic handler
    (one dictionary lookup per call) and drops the "registered method" copy of the same handlers.

    grpc.aio's accept loop keeps one pending request per registered method plus one for the rest,
    and waits on all of them (``asyncio.wait``) for every call it accepts: eleven futures to hook
    and unhook per call for this service. Generic only, it waits on one.
    """

    def __init__(self, server: aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Dropped on purpose: the generic handler serves the same methods."""


def _add_generic_only(servicer: InferenceServicer, server: aio.Server) -> None:
    add_GRPCInferenceServiceServicer_to_server(servicer, _GenericOnly(server))  # type: ignore[no-untyped-call]


class GrpcListenFailed(ModelyardError):
    """The gRPC port could not be bound (in use, or an address this host does not have)."""


class GrpcListener:
    """The gRPC server of one model server: started on the running loop once the models are in."""

    def __init__(self, plane: DataPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self._server: aio.Server | None = None

    def bind(self) -> None:
        """Take the port (a busy one fails here, before any model loads); serve from :meth:`start`."""
        limit = self.plane.settings.grpc_max_message_bytes
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not a second server on it
            ]
        )
        _add_generic_only(InferenceServicer(self.plane), server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            self.port = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:
            raise GrpcListenFailed(f"cannot listen for gRPC on {host}:{self.port}: {exc}") from None
        self._server = server

    async def start(self) -> str:
        """Serve; returns the URL (``http://host:port``: gRPC is HTTP/2 in clear text)."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        await self._server.start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self, grace_s: float | None) -> None:
        """Refuse new calls, let running ones finish for up to ``grace_s`` seconds, then cancel them."""
        if self._server is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.stop(grace_s)
            self._server = None
