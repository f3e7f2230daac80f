"""``RegistryAPI``: what both :class:`Registry` (local) and :class:`RegistryClient` (remote) offer.

The CLI and ``fetch_model`` are written against this Protocol, so they work the same on either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from modelyard.registry.refs import ModelRef
from modelyard.registry.types import (
    Alias,
    AliasEvent,
    ModelVersion,
    NewValidation,
    NewVersion,
    Page,
    RegisteredModel,
    StoredArtifact,
    Validation,
)

__all__ = ["RegistryAPI"]


class RegistryAPI(Protocol):
    def close(self) -> None: ...

    def get_model(self, name: str) -> RegisteredModel: ...

    def list_models(
        self, search: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[RegisteredModel]: ...

    def push(
        self,
        path: Path,
        name: str | None = None,
        spec: NewVersion | None = None,
        aliases: Sequence[str] = (),
    ) -> ModelVersion: ...

    def list_versions(
        self,
        name: str,
        search: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[ModelVersion]: ...

    def resolve(self, ref: str | ModelRef) -> ModelVersion: ...

    def fetch(self, ref: str | ModelRef, dest_dir: Path) -> Path: ...

    def delete_version(self, name: str, version: int, *, force: bool = False) -> None: ...

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        user: str = "",
        expected_revision: int | None = None,
        require_validation: bool = False,
    ) -> Alias: ...

    def record_validation(self, name: str, version: int, verdict: NewValidation) -> Validation: ...

    def list_validations(self, name: str, version: int, limit: int = 20) -> list[Validation]: ...

    def delete_alias(
        self, name: str, alias: str, *, user: str = "", expected_revision: int | None = None
    ) -> None: ...

    def list_aliases(self, name: str) -> list[Alias]: ...

    def alias_history(
        self, name: str, alias: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[AliasEvent]: ...

    def collect_garbage(
        self, older_than: timedelta = timedelta(hours=1), dry_run: bool = False
    ) -> list[StoredArtifact]: ...
