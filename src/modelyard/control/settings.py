"""The control plane's one settings object: where its database and artifacts live, and its server's limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ControlSettings", "default_home"]

GIB = 1024**3
_ENV_FIELDS = (
    ("MODELYARD_VALIDATION_TIMEOUT_S", "validation_job_timeout_s"),
    ("MODELYARD_ALLOW_PRIVATE_DATASETS", "allow_private_datasets"),
)


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$MODELYARD_HOME``, else ``~/.modelyard`` (read when called, never at import)."""
    env = os.environ if environ is None else environ
    value = env.get("MODELYARD_HOME")
    return Path(value).expanduser() if value else Path.home() / ".modelyard"


class ControlSettings(BaseModel):
    """Control-plane settings (registry, routing table, deploy history); every field has a working
    default on a laptop (SQLite + a local folder).

    ``database_url`` is any SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://u@h/db``);
    ``artifact_url`` is any fsspec URL or local path (``/srv/artifacts``, ``s3://bucket/prefix``,
    ``memory://test``). Unset, both live under ``home``.
    """

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    artifact_url: str | None = None
    cache_dir: Path | None = Field(default=None, description="where fetch() keeps verified downloads")
    max_upload_bytes: int = Field(default=20 * GIB, ge=1, description="larger uploads get 413")
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    default_page_size: int = Field(default=50, ge=1, le=1000)
    max_page_size: int = Field(default=1000, ge=1)
    log_level: str = "info"
    auth: Literal["auto", "on"] = Field(
        default="auto",
        description="on: every API call needs a token; auto: once any token exists, or off loopback",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header names accepted besides loopback and the bound one"
    )
    tls_cert: Path | None = Field(default=None, description="serve HTTPS with this certificate (PEM)")
    tls_key: Path | None = Field(default=None, description="the certificate's private key (PEM)")
    upload_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="an upload that sends nothing for this long is dropped"
    )
    max_concurrent_uploads: int = Field(default=8, ge=1, description="beyond it uploads get 503")
    allow_local_paths: bool = Field(
        default=False, description="deploy files may name model code on this host (file.py:Class)"
    )
    allowed_env: list[str] = Field(
        default_factory=list,
        description="interpreter-control variables (PYTHON*, LD_*, ...) deploy files may set anyway",
    )
    analysis_log: str = Field(
        default="",
        description="the gateway's inference log the online analysis reads (a log_sink URL; "
        "'' = the JSON-lines file under home; 'none' = no analysis)",
    )
    validation_job_timeout_s: float = Field(
        default=1800.0, gt=0, description="a validation job running longer is killed and ends in error"
    )
    allow_private_datasets: bool = Field(
        default=False,
        description="validation setups may read https:// datasets on loopback or private addresses",
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> ControlSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ControlSettings:
        """Settings from ``MODELYARD_HOME``, ``MODELYARD_REGISTRY_DB``, ``MODELYARD_ARTIFACTS``,
        ``MODELYARD_ANALYSIS_LOG`` (else ``MODELYARD_GATEWAY_LOG_SINK``) and :data:`_ENV_FIELDS`."""
        env = os.environ if environ is None else environ
        data: dict[str, object] = {"home": default_home(env)}
        if env.get("MODELYARD_REGISTRY_DB"):
            data["database_url"] = env["MODELYARD_REGISTRY_DB"]
        if env.get("MODELYARD_ARTIFACTS"):
            data["artifact_url"] = env["MODELYARD_ARTIFACTS"]
        # The analysis reads where the gateway writes, unless told otherwise.
        analysis_log = env.get("MODELYARD_ANALYSIS_LOG") or env.get("MODELYARD_GATEWAY_LOG_SINK")
        if analysis_log:
            data["analysis_log"] = analysis_log
        for name, field in _ENV_FIELDS:
            if env.get(name):
                data[field] = env[name]  # pydantic reads "600" and "true" as the field's type
        data.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(data)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'registry.db'}"

    def resolved_artifact_url(self) -> str:
        return self.artifact_url or str(self.home / "artifacts")

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.home / "cache"

    def resolved_analysis_log(self) -> str:
        """``analysis_log``, else the gateway's default log: ``home/logs/inference.jsonl``."""
        return self.analysis_log or str(self.home / "logs" / "inference.jsonl")
