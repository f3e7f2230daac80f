"""The one settings object: built once at start-up (from the CLI or code) and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelConfig", "Settings"]


class ModelConfig(BaseModel):
    """One model to serve from a file (``model.onnx``, ``model.joblib``, ``model.pt2``, ``pkg.py:Cls``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    name: str | None = None
    version: str | None = None
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, ge=0)


class Settings(BaseModel):
    """Server settings. Every field has a safe default for a laptop; see docs/serving.md."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    models: list[ModelConfig] = Field(default_factory=list)

    server_name: str = "modelyard"
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_queue: int = Field(default=1024, ge=1, description="queued requests per model before 503")
    request_timeout_s: float | None = Field(default=30.0, gt=0, description="default per-request deadline")
    workers_per_model: int = Field(default=4, ge=1, description="concurrent calls of an unbatched model")
    intra_op_threads: int = Field(
        default=1, ge=0, description="onnxruntime/torch threads; 0 = library default"
    )
    default_max_batch_size: int = Field(default=64, ge=1, description="batch limit for zero-code runtimes")
    # 2 ms, measured (docs/performance.md): long enough to fill batches under load, short enough
    # that the model never idles waiting for stragglers while the next batch is already queued.
    default_max_latency_ms: float = Field(default=2.0, ge=0)
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
