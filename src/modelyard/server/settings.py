"""The one settings object: built once at start-up (from the CLI or code) and passed down."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEVICES", "DEVICE_PATTERN", "MIN_TOKEN_CHARS", "DeviceName", "ModelConfig", "Settings"]

MIB = 1024 * 1024
MIN_TOKEN_CHARS = 16  # a model-control token shorter than this is refused at start-up
# Where a zero-code runtime runs (docs/runtimes.md, "Devices"); runtimes/devices.py resolves it.
DEVICE_PATTERN = re.compile(r"cpu|auto|(cuda|tensorrt)(:[0-9]{1,3})?")
DEVICES = "cpu, cuda, cuda:N, tensorrt, tensorrt:N (ONNX only) or auto"


def _device(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"device {value!r} must be one of {DEVICES}")
    return value


DeviceName = Annotated[str, AfterValidator(_device)]


class ModelConfig(BaseModel):
    """One model to serve from a file (``model.onnx``, ``model.joblib``, ``model.pt2``, ``pkg.py:Cls``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    name: str | None = None
    version: str | None = None
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, ge=0)
    device: DeviceName | None = Field(default=None, description="this model's device; default: the server's")


class Settings(BaseModel):
    """Server settings. Every field has a safe default for a laptop; see docs/serving.md."""

    # A bad model_control_token must not be echoed into a terminal or a CI log.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Off unless asked: gRPC needs the optional `grpc` extra (grpcio), and a server that never
    # serves it never imports it (docs/grpc.md).
    grpc_port: int | None = Field(
        default=None, ge=0, le=65535, description="OIP gRPC port beside REST; 0 picks one; None: no gRPC"
    )
    grpc_max_message_bytes: int = Field(
        default=64 * MIB, ge=1024, description="largest gRPC message either way; RESOURCE_EXHAUSTED above"
    )
    models: list[ModelConfig] = Field(default_factory=list)

    server_name: str = "modelyard"
    max_body_bytes: int = Field(default=64 * MIB, ge=1024, description="request bodies as sent; 413 above")
    # Decoding is what costs, not reading: a 61 KB gzip body of "[0]," inflated to 63 MB and held the
    # event loop 12 s (docs/serving.md, "Limits"). These bound what one request can make it do.
    max_inflated_bytes: int = Field(
        default=8 * MIB, ge=1024, description="a compressed body may inflate to this much; 413 above"
    )
    max_json_bytes: int = Field(
        default=8 * MIB, ge=1024, description="the JSON of one request (binary tensors aside); 413 above"
    )
    max_json_containers: int = Field(
        default=250_000, ge=1, description="JSON arrays and objects in one request; 413 above"
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="request line and headers; 431 and close above"
    )
    model_control: bool = Field(
        default=False, description="allow POST /v2/repository/models/{m}/load|unload (with the token)"
    )
    model_control_token: str | None = Field(
        default=None,
        repr=False,
        min_length=MIN_TOKEN_CHARS,
        description="the bearer token model-control requests must carry",
    )
    max_queue: int = Field(default=1024, ge=1, description="queued requests per model before 503")
    request_timeout_s: float | None = Field(default=30.0, gt=0, description="default per-request deadline")
    workers_per_model: int = Field(default=4, ge=1, description="concurrent calls of an unbatched model")
    intra_op_threads: int = Field(
        default=1, ge=0, description="onnxruntime/torch threads; 0 = library default"
    )
    device: DeviceName = Field(
        default="cpu", description="where zero-code runtimes run: cpu, cuda[:N], tensorrt[:N] or auto"
    )
    default_max_batch_size: int = Field(default=64, ge=1, description="batch limit for zero-code runtimes")
    # 0, measured (docs/performance.md): a request that finds the model idle goes at once, and
    # under load batches form from what queues while the model is busy (no window to tune per host).
    default_max_latency_ms: float = Field(default=0.0, ge=0)
    drain_grace_s: float = Field(default=0.0, ge=0, description="report not-ready this long before draining")
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="the longest to wait for in-flight requests"
    )
    # Readiness reads the last verdict of each model's health() hook; the hook itself runs here,
    # off the request path, so a probe never waits on (or multiplies calls to) the model.
    health_interval_s: float = Field(
        default=5.0, gt=0, description="seconds between two polls of every model's health() hook"
    )
    health_timeout_s: float = Field(
        default=2.0, gt=0, description="a health() call that takes longer counts as unhealthy"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    gil_switch_interval_ms: float | None = Field(
        default=0.5,
        gt=0,
        description="Python's GIL switch interval in the server process; None keeps Python's 5 ms",
    )

    @model_validator(mode="after")
    def _control_needs_a_token(self) -> Settings:
        if self.model_control and not self.model_control_token:
            raise ValueError(
                "model_control needs model_control_token (--model-control-token or"
                " MODELYARD_MODEL_CONTROL_TOKEN): load and unload are never open to anyone who can connect"
            )
        return self
