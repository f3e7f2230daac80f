"""The OpenAPI 3.1 document of the registry REST API, with schemas from the pydantic models."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from modelyard import __version__
from modelyard.registry.refs import MAX_VERSION
from modelyard.registry.types import (
    Alias,
    AliasEvent,
    ModelVersion,
    NewValidation,
    Page,
    RegisteredModel,
    RegisterRequest,
    StoredArtifact,
    Text,
    Validation,
    VersionUsage,
)

__all__ = ["OPERATIONS", "Operation", "openapi_document"]


class ModelCreate(BaseModel):
    name: Text = Field(max_length=128)
    description: Text = ""


class ModelUpdate(BaseModel):
    description: Text


class AliasMove(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION)
    user: Text = Field(default="", max_length=200)
    expected_revision: int | None = Field(default=None, ge=0, le=2**31 - 1)
    require_validation: bool = Field(
        default=False, description="refuse (409) unless the version's latest validation verdict is a pass"
    )


class ErrorBody(BaseModel):
    error: str
    kind: str
    field: str | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: type[BaseModel] | None = None  # None: no body (204), or a byte stream for downloads
    status: int = 200
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    many: bool = False  # the response is a JSON array of ``response``
    raw: bool = field(default=False)  # a raw byte body (upload) or byte response (download)


_PAGE = ("search", "page_size", "page_token")
_M = "/api/v1/models/{name}"
_V = "/api/v1/models/{name}/versions/{version}"

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/api/v1/models", "List models (keyset pages)", Page[RegisteredModel], query=_PAGE),
    Operation("POST", "/api/v1/models", "Create a model", RegisteredModel, 201, body=ModelCreate),
    Operation("GET", _M, "Show a model", RegisteredModel),
    Operation("PATCH", _M, "Update a model's description", RegisteredModel, body=ModelUpdate),
    Operation("DELETE", _M, "Delete a model without versions", status=204),
    Operation(
        "GET", f"{_M}/versions", "List a model's versions, newest first", Page[ModelVersion], query=_PAGE
    ),
    Operation(
        "POST",
        f"{_M}/versions",
        "Register an uploaded artifact as a version",
        ModelVersion,
        201,
        RegisterRequest,
    ),
    Operation("GET", _V, "Show a version", ModelVersion),
    Operation(
        "DELETE", _V, "Delete a version (409 while in use, unless force)", status=204, query=("force",)
    ),
    Operation("GET", f"{_V}/artifact", "Download a version's artifact", raw=True),
    Operation("GET", f"{_V}/usages", "List the consumers using a version", VersionUsage, many=True),
    Operation("PUT", f"{_V}/usages/{{consumer}}", "Mark a version used by a consumer", VersionUsage),
    Operation("DELETE", f"{_V}/usages/{{consumer}}", "Unmark a consumer", status=204),
    Operation(
        "GET",
        f"{_V}/validations",
        "A version's validation verdicts, newest first",
        Validation,
        many=True,
        query=("limit",),
    ),
    Operation(
        "POST", f"{_V}/validations", "Record a validation verdict", Validation, 201, body=NewValidation
    ),
    Operation("GET", f"{_M}/aliases", "List a model's aliases", Alias, many=True),
    Operation("GET", f"{_M}/aliases/{{alias}}", "Show an alias", Alias),
    Operation(
        "PUT",
        f"{_M}/aliases/{{alias}}",
        "Point an alias at a version (compare-and-set; optionally only a validated one)",
        Alias,
        body=AliasMove,
    ),
    Operation(
        "DELETE",
        f"{_M}/aliases/{{alias}}",
        "Delete an alias",
        status=204,
        query=("user", "expected_revision"),
    ),
    Operation(
        "GET",
        f"{_M}/history",
        "Alias moves, newest first",
        Page[AliasEvent],
        query=("alias", "page_size", "page_token"),
    ),
    Operation("POST", "/api/v1/artifacts", "Upload artifact bytes (raw body)", StoredArtifact, 201, raw=True),
    Operation("GET", "/api/v1/resolve", "Resolve name, name/3 or name@alias", ModelVersion, query=("ref",)),
    Operation(
        "POST",
        "/api/v1/gc",
        "Delete unreferenced artifacts older than older_than_s seconds (default 3600)",
        StoredArtifact,
        many=True,
        query=("older_than_s", "dry_run"),
    ),
    Operation("GET", "/api/v1/openapi.json", "This document"),
    Operation("GET", "/api/v1/health", "Liveness"),
)


_Refs = dict[type[BaseModel], dict[str, Any]]


def _schemas() -> tuple[_Refs, dict[str, Any]]:
    """Each model's ``$ref`` and the component schemas (generic pages get names like Page_Alias_)."""
    models = {op.response for op in OPERATIONS if op.response} | {op.body for op in OPERATIONS if op.body}
    ordered = sorted(models | {ErrorBody}, key=lambda model: model.__name__)
    keyed, schemas = models_json_schema(
        [(model, "serialization") for model in ordered], ref_template="#/components/schemas/{model}"
    )
    return {model: keyed[(model, "serialization")] for model in ordered}, schemas.get("$defs", {})


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(op: Operation, refs: _Refs) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "success"}
    if op.response is not None:
        schema = refs[op.response]
        ok |= _json({"type": "array", "items": schema} if op.many else schema)
    elif op.raw:
        ok["content"] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    error = {"description": "error (see kind)"} | _json(refs[ErrorBody])
    return {str(op.status): ok, "4XX": error, "5XX": error}


def _operation(op: Operation, refs: _Refs) -> dict[str, Any]:
    found: dict[str, Any] = {"summary": op.summary, "responses": _responses(op, refs)}
    names = re.findall(r"{(\w+)}", op.path)
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in op.query
    ]
    if op.raw and op.method == "POST":
        parameters.append(
            {"name": "x-content-sha256", "in": "header", "required": False, "schema": {"type": "string"}}
        )
        binary = {"schema": {"type": "string", "format": "binary"}}
        found["requestBody"] = {"required": True, "content": {"application/octet-stream": binary}}
    elif op.body is not None:
        found["requestBody"] = {"required": True} | _json(refs[op.body])
    if parameters:
        found["parameters"] = parameters
    return found


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``/api/v1`` (built once per process)."""
    refs, schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelyard registry", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
