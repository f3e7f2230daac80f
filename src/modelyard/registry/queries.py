"""Reading the registry tables: row conversion, lookups by name, and keyset-paged listings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select
from sqlalchemy.engine import Connection

from modelyard.control.db import as_utc
from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import schema as t
from modelyard.registry.refs import MAX_VERSION, check_name
from modelyard.registry.types import Alias, AliasEvent, ModelVersion, RegisteredModel

__all__ = [
    "aliases_by_model",
    "aliases_by_version",
    "contains",
    "latest_versions",
    "model_id",
    "model_row",
    "to_alias",
    "to_event",
    "to_model",
    "to_version",
    "version_row",
]


def contains(columns: Iterable[ColumnElement[Any]], text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match on any of ``columns``, with LIKE wildcards escaped."""
    needle = text.lower()
    return or_(*(func.lower(column).contains(needle, autoescape=True) for column in columns))


def model_row(conn: Connection, name: str) -> Row[Any]:
    check_name(name)  # a name that cannot exist (or that the database would refuse, like a NUL)
    row = conn.execute(select(t.models).where(t.models.c.name == name)).first()
    if row is None:
        raise NotFound(f"model '{name}' not found", field="model")
    return row


def model_id(conn: Connection, name: str) -> int:
    check_name(name)
    found = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"model '{name}' not found", field="model")
    return int(found)


def version_row(conn: Connection, model: int, name: str, version: int) -> Row[Any]:
    if not 1 <= version <= MAX_VERSION:
        raise InvalidInput(f"invalid version {version}: versions are 1 to {MAX_VERSION}", field="version")
    row = conn.execute(
        select(t.versions).where(and_(t.versions.c.model_id == model, t.versions.c.version == version))
    ).first()
    if row is None:
        raise NotFound(f"model '{name}' has no version {version}", field="version")
    return row


def latest_versions(conn: Connection, model_ids: Sequence[int]) -> dict[int, int]:
    if not model_ids:
        return {}
    # One correlated max() per model rather than GROUP BY: each is a single probe of the
    # (model_id, version) index, where GROUP BY would read every version of every model.
    latest = (
        select(func.max(t.versions.c.version)).where(t.versions.c.model_id == t.models.c.id).scalar_subquery()
    )
    rows = conn.execute(select(t.models.c.id, latest).where(t.models.c.id.in_(model_ids)))
    return {int(row[0]): int(row[1]) for row in rows if row[1] is not None}


def aliases_by_model(conn: Connection, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = defaultdict(dict)
    if model_ids:
        rows = conn.execute(
            select(t.aliases.c.model_id, t.aliases.c.alias, t.aliases.c.version).where(
                t.aliases.c.model_id.in_(model_ids)
            )
        )
        for row in rows:
            found[int(row.model_id)][row.alias] = int(row.version)
    return found


def aliases_by_version(conn: Connection, model: int, versions: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    if versions:
        rows = conn.execute(
            select(t.aliases.c.alias, t.aliases.c.version)
            .where(and_(t.aliases.c.model_id == model, t.aliases.c.version.in_(versions)))
            .order_by(t.aliases.c.alias)
        )
        for row in rows:
            found[int(row.version)].append(row.alias)
    return found


def to_model(row: Row[Any], latest: int | None, aliases: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        description=row.description,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        latest_version=latest,
        aliases=dict(sorted(aliases.items())),
    )


def to_version(row: Row[Any], name: str, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=row.version,
        artifact_uri=row.artifact_uri,
        sha256=row.sha256,
        size=row.size,
        filename=row.filename,
        description=row.description,
        user=row.user,
        source_run=row.source_run,
        metrics=row.metrics,
        params=row.params,
        labels=row.labels,
        manifest=row.manifest,
        created_at=as_utc(row.created_at),
        aliases=aliases,
    )


def to_alias(row: Row[Any], name: str) -> Alias:
    return Alias(
        name=name,
        alias=row.alias,
        version=row.version,
        revision=row.revision,
        updated_at=as_utc(row.updated_at),
        updated_by=row.updated_by,
    )


def to_event(row: Row[Any], name: str) -> AliasEvent:
    return AliasEvent(
        id=row.id,
        name=name,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        user=row.user,
        at=as_utc(row.at),
    )
