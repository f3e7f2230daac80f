"""Building and guarding a version's row: the values written, the manifest's defaults, the model
row created on first use, the per-digest lock. What ``Registry.register`` and ``push`` share."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from modelyard.errors import InvalidInput
from modelyard.registry import queries as q
from modelyard.registry import schema as t
from modelyard.registry.types import NewVersion, StoredArtifact

__all__ = ["ensure_model", "lock_digest", "revalidated", "version_values", "with_manifest_defaults"]


def revalidated(spec: NewVersion) -> NewVersion:
    """``spec`` checked again after defaults were filled in (model_copy does not validate)."""
    try:
        return NewVersion.model_validate(spec.model_dump(include=set(NewVersion.model_fields)))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidInput(f"invalid version metadata: {field}: {first['msg']}", field=field) from None


def ensure_model(conn: Connection, name: str, description: str) -> int:
    """The id of model ``name``, created (in the caller's transaction) if it does not exist yet."""
    found = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
    if found is not None:
        return int(found)
    now = datetime.now(UTC)
    with contextlib.suppress(IntegrityError), conn.begin_nested():  # created meanwhile: just as good
        conn.execute(
            insert(t.models).values(name=name, description=description, created_at=now, updated_at=now)
        )
    return q.model_id(conn, name)


def lock_digest(conn: Connection, sha256: str) -> None:
    """Serialise transactions about the same bytes until commit.

    On PostgreSQL a transaction-scoped advisory lock keyed by the digest; SQLite needs nothing, as
    its write transactions (BEGIN IMMEDIATE) already run one at a time.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:digest, 0))"), {"digest": sha256})


def version_values(
    model: int, number: int, stored: StoredArtifact, spec: NewVersion, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "model_id": model,
        "version": number,
        "artifact_uri": stored.uri,
        "sha256": stored.sha256,
        "size": stored.size,
        "filename": spec.filename,
        "description": spec.description,
        "user": spec.user,
        "source_run": spec.source_run,
        "metrics": dict(spec.metrics),
        "params": dict(spec.params),
        "labels": dict(spec.labels),
        "manifest": manifest,
        "created_at": datetime.now(UTC),
    }


def with_manifest_defaults(spec: NewVersion, manifest: dict[str, Any] | None) -> NewVersion:
    """Fill what the caller left empty from the package manifest; the caller's values win."""
    update: dict[str, Any] = {}
    if manifest:
        if not spec.description and manifest.get("description"):
            update["description"] = str(manifest["description"])
        if not spec.user and manifest.get("author"):
            update["user"] = str(manifest["author"])
        labels = manifest.get("labels")
        if isinstance(labels, dict):
            update["labels"] = {**{str(k): str(v) for k, v in labels.items()}, **spec.labels}
    return spec.model_copy(update=update)
