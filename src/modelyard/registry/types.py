"""The registry's value objects: what the core returns, the REST API sends and the client parses."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Alias",
    "AliasEvent",
    "ModelVersion",
    "Page",
    "RegisterRequest",
    "RegisteredModel",
    "StoredArtifact",
    "VersionSpec",
    "VersionUsage",
]

T = TypeVar("T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredArtifact(_Frozen):
    """Bytes in the artifact store, addressed by their SHA-256."""

    sha256: str
    size: int
    uri: str


class RegisteredModel(_Frozen):
    name: str
    description: str = ""
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict, description="alias -> version")


class VersionSpec(_Frozen):
    """What a caller says about a new version; everything but the bytes."""

    version: int | None = Field(default=None, ge=1, description="explicit version; default: latest + 1")
    filename: str = Field(default="artifact", description="the artifact's original file name")
    description: str = ""
    user: str = ""
    source_run: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class RegisterRequest(VersionSpec):
    """REST body of ``POST /api/v1/models/{name}/versions``: an uploaded artifact plus its metadata."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    aliases: list[str] = Field(default_factory=list, description="aliases to point at the new version")


class ModelVersion(_Frozen):
    name: str
    version: int
    artifact_uri: str
    sha256: str
    size: int
    filename: str
    description: str = ""
    user: str = ""
    source_run: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    manifest: dict[str, Any] | None = Field(default=None, description="the package manifest, if a package")
    created_at: datetime
    aliases: list[str] = Field(default_factory=list, description="aliases pointing at this version")

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


class Alias(_Frozen):
    """Where an alias points now; ``revision`` grows by one on every move (compare-and-set token)."""

    name: str
    alias: str
    version: int
    revision: int
    updated_at: datetime
    updated_by: str = ""


class AliasEvent(_Frozen):
    """One move of an alias; ``from_version`` is None when created, ``to_version`` None when removed."""

    id: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    user: str = ""
    at: datetime


class VersionUsage(_Frozen):
    consumer: str
    since: datetime


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next (None on the last page)."""

    items: list[T]
    next_page_token: str | None = None
