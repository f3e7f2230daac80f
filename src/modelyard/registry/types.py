"""The registry's value objects: what the core returns, the REST API sends and the client parses."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from modelyard.registry.refs import MAX_VERSION

__all__ = [
    "Alias",
    "AliasEvent",
    "ListedArtifact",
    "ModelVersion",
    "NewValidation",
    "NewVersion",
    "Page",
    "RegisterRequest",
    "RegisteredModel",
    "StoredArtifact",
    "Validation",
    "ValidationGate",
    "VersionUsage",
]

T = TypeVar("T")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _safe_filename(value: str) -> str:
    """A bare file name: what a download writes and a package loader reads, so no path and no ':'."""
    if value in ("", ".", "..") or any(c in value for c in "/\\:") or any(ord(c) < 32 for c in value):
        raise ValueError(
            "must be a plain file name: not empty, '.' or '..', no '/', '\\', ':' or control characters"
        )
    return value


# Every string the registry stores: PostgreSQL text cannot hold NUL, and the limits match the schema.
Text = Annotated[str, AfterValidator(_no_nul)]
Key = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoredArtifact(_Frozen):
    """Bytes in the artifact store, addressed by their SHA-256."""

    sha256: str
    size: int
    uri: str


class ListedArtifact(StoredArtifact):
    """A stored blob as the store lists it: with its modification time, for garbage collection."""

    modified_at: datetime


class RegisteredModel(_Frozen):
    name: str
    description: str = ""
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict, description="alias -> version")


class NewVersion(_Frozen):
    """What a caller says about a new version; everything but the bytes."""

    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="explicit version; default: latest + 1"
    )
    filename: Annotated[str, AfterValidator(_safe_filename)] = Field(
        default="artifact", max_length=255, description="the artifact's original file name"
    )
    description: Text = ""
    user: Text = Field(default="", max_length=200)
    source_run: Text = Field(default="", max_length=500)
    metrics: dict[Key, Finite] = Field(default_factory=dict)
    params: dict[Key, Text] = Field(default_factory=dict)
    labels: dict[Key, Text] = Field(default_factory=dict)


class RegisterRequest(NewVersion):
    """REST body of ``POST /api/v1/models/{name}/versions``: an uploaded artifact plus its metadata."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    aliases: list[Text] = Field(default_factory=list, description="aliases to point at the new version")


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


MAX_VALIDATION_DEPTH = 8  # nesting of a verdict's policy and figures


def _plain_json(value: Any, depth: int = 0) -> Any:
    """JSON both databases store as is: no NaN/Infinity (PostgreSQL's json refuses them), no NUL,
    bounded nesting."""
    if depth > MAX_VALIDATION_DEPTH:
        raise ValueError(f"nested deeper than {MAX_VALIDATION_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not hold NaN or Infinity (write them as strings)")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(str(key))
            _plain_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _plain_json(item, depth + 1)
    return value


PlainJson = Annotated[dict[str, Any], AfterValidator(_plain_json)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ValidationGate(_Frozen):
    """One gate of a validation verdict: the figure it read against its threshold."""

    gate: Text = Field(max_length=63)
    outcome: Literal["pass", "fail", "inconclusive"]
    value: Finite | None = None
    threshold: Finite
    reason: Text = Field(default="", max_length=500)


class NewValidation(_Frozen):
    """A verdict of ``modelyard validate`` to record on a version: the outcome, what the version was
    compared with (baseline, dataset, by digest when known), the policy and each gate."""

    outcome: Literal["pass", "fail", "inconclusive"]
    baseline: Text = Field(
        max_length=500, description="the baseline as given, and the version it resolved to"
    )
    baseline_sha256: Digest | None = None
    dataset: Text = Field(max_length=500)
    dataset_sha256: Digest | None = None
    rows: int = Field(ge=0, le=2**62)
    policy: PlainJson = Field(default_factory=dict)
    gates: list[ValidationGate] = Field(default_factory=list, max_length=64)
    figures: PlainJson = Field(default_factory=dict, description="headline figures: agreement, labels...")
    user: Text = Field(default="", max_length=200)


class Validation(NewValidation):
    """A recorded verdict."""

    id: int
    name: str
    version: int
    created_at: datetime


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next (None on the last page)."""

    items: list[T]
    next_page_token: str | None = None
