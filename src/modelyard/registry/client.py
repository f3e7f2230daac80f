"""``RegistryClient``: the registry's REST API from Python, with the same methods as :class:`Registry`.

Errors come back as the same domain errors the core raises (:class:`NotFound`, :class:`Conflict`,
:class:`InvalidInput`, ...), rebuilt from the ``{"error", "kind", "field"}`` body.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from modelyard.registry.files import download_verified, file_chunks
from modelyard.registry.packages import inspect_package
from modelyard.registry.refs import ModelRef, check_consumer
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
    VersionUsage,
)
from modelyard.web.api_client import ApiClient
from modelyard.web.errors import error_from_body

__all__ = ["RegistryClient"]

M = TypeVar("M", bound=BaseModel)


def _q(part: str) -> str:
    return quote(part, safe="")


def _usage_path(name: str, version: int, consumer: str) -> str:
    # Checked here too: a "../.." consumer must never become a path that names something else.
    return f"/models/{_q(name)}/versions/{int(version)}/usages/{_q(check_consumer(consumer))}"


class RegistryClient(ApiClient):
    """A registry server at ``base_url`` (``http://host:port``); use as a context manager or close()."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, transport=transport, token=token)

    def _get(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._send(method, path, **kwargs).content)

    def _list(self, model: type[M], path: str) -> list[M]:
        return [model.model_validate(item) for item in self._send("GET", path).json()]

    @staticmethod
    def _page_params(search: str | None, page_size: int | None, page_token: str | None) -> dict[str, Any]:
        params = {"search": search, "page_size": page_size, "page_token": page_token}
        return {key: value for key, value in params.items() if value is not None}

    # -- models -----------------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "") -> RegisteredModel:
        return self._get(RegisteredModel, "POST", "/models", json={"name": name, "description": description})

    def get_model(self, name: str) -> RegisteredModel:
        return self._get(RegisteredModel, "GET", f"/models/{_q(name)}")

    def update_model(self, name: str, description: str) -> RegisteredModel:
        return self._get(RegisteredModel, "PATCH", f"/models/{_q(name)}", json={"description": description})

    def delete_model(self, name: str) -> None:
        self._send("DELETE", f"/models/{_q(name)}")

    def list_models(
        self, search: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[RegisteredModel]:
        params = self._page_params(search, page_size, page_token)
        return self._get(Page[RegisteredModel], "GET", "/models", params=params)

    # -- versions ---------------------------------------------------------------------------------

    def upload(
        self, chunks: Iterable[bytes], *, expected_size: int | None = None, expected_sha256: str | None = None
    ) -> StoredArtifact:
        """Stream bytes to the server; with ``expected_size`` it is sent as Content-Length."""
        headers = {"content-type": "application/octet-stream"}
        if expected_size is not None:
            headers["content-length"] = str(expected_size)
        if expected_sha256 is not None:
            headers["x-content-sha256"] = expected_sha256
        return self._get(StoredArtifact, "POST", "/artifacts", content=iter(chunks), headers=headers)

    def push(
        self,
        path: Path,
        name: str | None = None,
        spec: NewVersion | None = None,
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Upload a local file and register it; a package's manifest supplies the default name."""
        manifest = inspect_package(path)
        name = name or (str(manifest["name"]) if manifest and manifest.get("name") else path.stem)
        spec = spec or NewVersion()
        if spec.filename == "artifact":
            spec = spec.model_copy(update={"filename": path.name})
        with path.open("rb") as handle:
            stored = self.upload(file_chunks(handle), expected_size=path.stat().st_size)
        return self.register(name, stored.sha256, spec, aliases=aliases)

    def register(
        self, name: str, sha256: str, spec: NewVersion | None = None, *, aliases: Sequence[str] = ()
    ) -> ModelVersion:
        body = {**(spec or NewVersion()).model_dump(mode="json"), "sha256": sha256, "aliases": list(aliases)}
        return self._get(ModelVersion, "POST", f"/models/{_q(name)}/versions", json=body)

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self._get(ModelVersion, "GET", f"/models/{_q(name)}/versions/{version}")

    def list_versions(
        self,
        name: str,
        search: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        params = self._page_params(search, page_size, page_token)
        return self._get(Page[ModelVersion], "GET", f"/models/{_q(name)}/versions", params=params)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        return self._get(ModelVersion, "GET", "/resolve", params={"ref": str(ref)})

    def delete_version(self, name: str, version: int, *, force: bool = False) -> None:
        params = {"force": "true"} if force else {}
        self._send("DELETE", f"/models/{_q(name)}/versions/{version}", params=params)

    def artifact_chunks(self, version: ModelVersion) -> Iterator[bytes]:
        path = f"/models/{_q(version.name)}/versions/{version.version}/artifact"
        with self._http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from_body(response.status_code, response.content)
            yield from response.iter_bytes()

    def fetch(self, ref: str | ModelRef, dest_dir: Path) -> Path:
        """Download ``ref``'s artifact into ``dest_dir`` (verified; an intact copy there is reused)."""
        version = self.resolve(ref)
        return download_verified(version, dest_dir, lambda: self.artifact_chunks(version))

    def collect_garbage(
        self, older_than: timedelta = timedelta(hours=1), dry_run: bool = False
    ) -> list[StoredArtifact]:
        """Have the server delete unreferenced artifacts older than ``older_than`` (whole seconds)."""
        params = {"older_than_s": int(older_than.total_seconds()), "dry_run": "true" if dry_run else "false"}
        return [
            StoredArtifact.model_validate(item) for item in self._send("POST", "/gc", params=params).json()
        ]

    # -- aliases ----------------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        user: str = "",
        expected_revision: int | None = None,
        require_validation: bool = False,
    ) -> Alias:
        body: dict[str, Any] = {"version": version, "user": user, "expected_revision": expected_revision}
        if require_validation:
            body["require_validation"] = True
        return self._get(Alias, "PUT", f"/models/{_q(name)}/aliases/{_q(alias)}", json=body)

    def delete_alias(
        self, name: str, alias: str, *, user: str = "", expected_revision: int | None = None
    ) -> None:
        params: dict[str, Any] = {"user": user}
        if expected_revision is not None:
            params["expected_revision"] = expected_revision
        self._send("DELETE", f"/models/{_q(name)}/aliases/{_q(alias)}", params=params)

    def get_alias(self, name: str, alias: str) -> Alias:
        return self._get(Alias, "GET", f"/models/{_q(name)}/aliases/{_q(alias)}")

    def list_aliases(self, name: str) -> list[Alias]:
        return self._list(Alias, f"/models/{_q(name)}/aliases")

    def alias_history(
        self, name: str, alias: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[AliasEvent]:
        params = {"alias": alias, "page_size": page_size, "page_token": page_token}
        query = {key: value for key, value in params.items() if value is not None}
        return self._get(Page[AliasEvent], "GET", f"/models/{_q(name)}/history", params=query)

    # -- validation verdicts -----------------------------------------------------------------------

    def record_validation(self, name: str, version: int, verdict: NewValidation) -> Validation:
        path = f"/models/{_q(name)}/versions/{int(version)}/validations"
        return self._get(Validation, "POST", path, json=verdict.model_dump(mode="json"))

    def list_validations(self, name: str, version: int, limit: int = 20) -> list[Validation]:
        path = f"/models/{_q(name)}/versions/{int(version)}/validations"
        response = self._send("GET", path, params={"limit": limit})
        return [Validation.model_validate(item) for item in response.json()]

    # -- usages -----------------------------------------------------------------------------------

    def mark_used(self, name: str, version: int, consumer: str) -> VersionUsage:
        return self._get(VersionUsage, "PUT", _usage_path(name, version, consumer))

    def unmark_used(self, name: str, version: int, consumer: str) -> None:
        self._send("DELETE", _usage_path(name, version, consumer))

    def list_usages(self, name: str, version: int) -> list[VersionUsage]:
        return self._list(VersionUsage, f"/models/{_q(name)}/versions/{version}/usages")
