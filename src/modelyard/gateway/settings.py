"""The gateway's one settings object, built at start-up and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelyard.control.settings import ControlSettings

__all__ = ["GatewaySettings"]

MIB = 1024 * 1024


class GatewaySettings(BaseModel):
    """Every knob of the gateway; each default works on a laptop.

    The routing table is read from the control-plane database that ``control`` names (the
    registry's: SQLite under ``$MODELYARD_HOME`` unless ``MODELYARD_REGISTRY_DB`` says otherwise),
    or, when ``routes_file`` is set, from that file or folder of files (``routing/route_file.py``).

    ``admin_port`` opens a second listener for what names internal addresses (``/metrics`` and
    ``/-/routing`` list replica URLs): unset, they are served nowhere; the public port answers only
    model paths and the probes. ``tls_cert`` and ``tls_key`` (PEM files) make both listeners HTTPS.
    """

    model_config = ConfigDict(extra="forbid")

    control: ControlSettings = Field(default_factory=ControlSettings)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_host: str = Field(default="127.0.0.1", description="address of the admin listener")
    admin_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="serve /metrics and /-/routing on this port (0 picks one); unset: nowhere",
    )  # fmt: skip
    tls_cert: Path | None = Field(default=None, description="serve HTTPS with this certificate (PEM)")
    tls_key: Path | None = Field(default=None, description="the certificate's private key (PEM)")
    workers: int = Field(default=0, ge=0, le=256, description="worker processes; 0 = one per core")
    routes_file: Path | None = Field(
        default=None, description="read routes from this file or folder (watched) instead of the database"
    )
    refresh_interval_s: float = Field(default=0.25, gt=0, le=60, description="routing-table poll period")
    max_body_bytes: int = Field(default=16 * MIB, ge=1, description="larger request bodies get 413")
    max_in_flight: int = Field(default=4096, ge=1, description="per worker; beyond it requests get 503")
    retries: int = Field(default=2, ge=0, le=10, description="other replicas tried after a failure")
    connect_timeout_s: float = Field(default=2.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1, description="consecutive failures that eject")
    eject_s: float = Field(default=5.0, gt=0, description="first ejection; doubles while it keeps failing")
    max_eject_s: float = Field(default=60.0, gt=0)
    mirror_queue: int = Field(default=1024, ge=1, description="mirrored copies waiting; beyond: dropped")
    mirror_concurrency: int = Field(default=32, ge=1, description="mirrored copies in flight per worker")
    log_sink: str = Field(default="", description="jsonl path/URL, redis://..., nats://..., or none")
    log_buffer: int = Field(default=50_000, ge=1, description="records buffered before dropping")
    idle_poll_us: int = Field(
        default=200, ge=0, le=10_000,
        description="with one request in flight, poll this long before sleeping (0 = off; idlepoll.py)",
    )  # fmt: skip
    log_level: str = "warning"
    metrics_dir: Path | None = Field(
        default=None, description="set by the supervisor: where workers share metrics snapshots"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise ValueError(f"tls_cert and tls_key go together: {missing} is missing")
        return self

    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "http" if self.tls_cert is None else "https"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> GatewaySettings:
        """Settings from the environment (``MODELYARD_HOME``, ``MODELYARD_REGISTRY_DB``,
        ``MODELYARD_GATEWAY_LOG_SINK``) plus explicit overrides (None means "not given")."""
        env = os.environ if environ is None else environ
        data: dict[str, object] = {"control": ControlSettings.from_env(env)}
        if env.get("MODELYARD_GATEWAY_LOG_SINK"):
            data["log_sink"] = env["MODELYARD_GATEWAY_LOG_SINK"]
        data.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(data)

    def resolved_log_sink(self) -> str:
        return self.log_sink or str(self.control.home / "logs" / "inference.jsonl")

    def resolved_workers(self) -> int:
        """``workers``, else the cores this process may run on (affinity and cpusets count)."""
        if self.workers:
            return self.workers
        try:
            return len(os.sched_getaffinity(0)) or 1
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
