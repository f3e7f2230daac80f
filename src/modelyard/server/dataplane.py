"""The transport-free core of the model server. Every protocol adapter calls this and only this."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.errors import ModelNotReady
from modelyard.sdk import ModelMetadata
from modelyard.server.health import HealthPoller
from modelyard.server.metrics import ServerMetrics
from modelyard.server.repository import ModelRepository
from modelyard.server.runtime import ModelRuntime
from modelyard.server.settings import Settings
from modelyard.server.types import InferenceRequest, InferenceResponse
from modelyard.server.validation import (
    check_inputs,
    check_requested_outputs,
    normalize_outputs,
    select_outputs,
)

__all__ = ["DataPlane", "Lifecycle", "ModelStatus"]

EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository")


@dataclass
class Lifecycle:
    """Where the server is in its life: probes read it, the shutdown path writes it."""

    started: bool = False
    draining: bool = False
    startup_error: str | None = None


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    state: str
    reason: str
    healthy: bool = True  # the last verdict of the model's health hook (True without one)


class DataPlane:
    """Health, metadata and inference over the models in a :class:`ModelRepository`."""

    def __init__(
        self, settings: Settings, repository: ModelRepository, metrics: ServerMetrics, version: str
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.metrics = metrics
        self.lifecycle = Lifecycle()
        self.server_version = version
        self.health = HealthPoller(repository, settings.health_interval_s, settings.health_timeout_s)

    # -- health ------------------------------------------------------------------------------

    def live(self) -> bool:
        """The process answers; never depends on model state (a failing liveness probe kills the pod)."""
        return True

    def started(self) -> bool:
        """Start-up (load + warm-up of every model) finished successfully."""
        return self.lifecycle.started and self.lifecycle.startup_error is None

    def ready(self) -> bool:
        """Started, not draining, and every model ready and healthy (as of the last health poll)."""
        if not self.started() or self.lifecycle.draining:
            return False
        return all(runtime.healthy for runtime in self.repository)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Not draining, and that model ready and healthy; reads the last poll, never calls the hook."""
        runtime = self.repository.get(name, version)
        return not self.lifecycle.draining and runtime.healthy

    # -- metadata ----------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, object]:
        return {
            "name": self.settings.server_name,
            "version": self.server_version,
            "extensions": list(EXTENSIONS),
        }

    def model(self, name: str, version: str | None = None) -> ModelRuntime:
        return self.repository.get(name, version)

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        return self.repository.get(name, version).metadata

    def model_versions(self, name: str) -> list[str]:
        return self.repository.versions(name)

    def index(self) -> list[ModelStatus]:
        return [
            ModelStatus(
                rt.spec.name,
                rt.spec.version,
                rt.state.value,
                rt.health_reason if rt.ready and not rt.healthy else rt.reason,
                not rt.ready or rt.healthy,  # a model not READY says so through its state
            )
            for rt in self.repository
        ]

    # -- inference ---------------------------------------------------------------------------

    async def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        runtime = self.repository.get(name, version)
        if not runtime.ready:
            raise ModelNotReady(runtime.name, runtime.state.value)
        meta = runtime.metadata
        check_inputs(meta, request)
        check_requested_outputs(meta, request.outputs)
        raw = await runtime.infer(request.inputs, request.timeout_s)
        outputs = select_outputs(normalize_outputs(meta, raw), request.outputs)
        return InferenceResponse(meta.name, meta.version, outputs, request.id)

    # -- repository --------------------------------------------------------------------------

    async def load_model(self, name: str) -> None:
        """(Re)load every version of a known model (the OIP model-repository extension)."""
        runtimes = [rt for rt in self.repository if rt.spec.name == name] or [self.repository.get(name)]
        await asyncio.gather(*(rt.load() for rt in runtimes if not rt.ready))
        await self.health.poll(runtimes)  # a fresh instance is ready only once its hook agrees

    async def unload_model(self, name: str) -> None:
        runtimes = [rt for rt in self.repository if rt.spec.name == name] or [self.repository.get(name)]
        await asyncio.gather(*(rt.unload() for rt in runtimes))

    async def start(self) -> None:
        """Load and warm up every model, check their health once, start polling it, report started.

        A model that failed to load does not stop the start: the start-up probe says why.
        """
        by_name: dict[str, list[ModelRuntime]] = {}
        for runtime in self.repository:
            by_name.setdefault(runtime.spec.name, []).append(runtime)
            self.metrics.track_health(runtime.spec.name, runtime.spec.version, _health_reader(runtime))
        for name, versions in by_name.items():  # the gauges are per model: sum its versions
            self.metrics.track_queue(name, _depth_reader(versions))
            self.metrics.track_in_flight(name, _in_flight_reader(versions))
        try:
            await self.repository.load_all()
        except Exception as exc:
            self.lifecycle.startup_error = f"{type(exc).__name__}: {exc}"
        await self.health.poll()  # the first verdicts are in before readiness can turn true
        self.health.start()
        self.lifecycle.started = True

    async def stop(self) -> None:
        self.lifecycle.draining = True
        await self.health.stop()
        await self.repository.unload_all()


def _health_reader(runtime: ModelRuntime) -> Callable[[], float]:
    return lambda: 1.0 if runtime.healthy else 0.0


def _depth_reader(runtimes: list[ModelRuntime]) -> Callable[[], float]:
    return lambda: float(sum(runtime.queue_depth for runtime in runtimes))


def _in_flight_reader(runtimes: list[ModelRuntime]) -> Callable[[], float]:
    return lambda: float(sum(runtime.in_flight for runtime in runtimes))
