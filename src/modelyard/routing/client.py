"""``RouteClient``: the routing-table REST API (``/api/v1/routes``) with :class:`RouteStore`'s methods.

Errors come back as the domain errors the store raises (:class:`NotFound`, :class:`Conflict`,
:class:`InvalidInput`), rebuilt from the ``{"error", "kind", "field"}`` body.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from modelyard.routing.discovery import Announcement
from modelyard.routing.keys import ApiKey, key_from_dict
from modelyard.routing.table import ModelRoute, check_name, route_from_dict
from modelyard.web.api_client import ApiClient

__all__ = ["RouteClient"]


def _path(project: str, model: str, version: str | None = None) -> str:
    # Checked here too, so that a name like ".." can never become a path that means something else.
    path = f"/routes/{_segment(project, 'project')}/{_segment(model, 'model')}"
    return path if version is None else f"{path}/versions/{_segment(version, 'version')}"


def _segment(name: str, field: str) -> str:
    return quote(check_name(name, field), safe="")


def _endpoint(data: dict[str, Any]) -> Announcement:
    return Announcement(
        data["project"], data["model"], data["version"], data["url"], bool(data["ready"]),
        datetime.fromisoformat(data["heartbeat_at"]), datetime.fromisoformat(data["expires_at"]),
    )  # fmt: skip


class RouteClient(ApiClient):
    """The control plane at ``base_url`` (``http://host:port``); a context manager, or call close()."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url, timeout=timeout, transport=transport, token=token)

    def _route(self, method: str, path: str, **kwargs: Any) -> ModelRoute:
        return route_from_dict(self._send(method, path, **kwargs).json())

    def revision(self) -> int:
        """The routing table's revision on the server."""
        return int(self._send("GET", "/routes/_revision").json()["revision"])

    def get(self, project: str, model: str) -> ModelRoute:
        return self._route("GET", _path(project, model))

    def list(self) -> builtins.list[ModelRoute]:
        return [route_from_dict(item) for item in self._send("GET", "/routes").json()]

    def set_weights(
        self, project: str, model: str, weights: Mapping[str, int], *, replace: bool = True
    ) -> ModelRoute:
        body = {"weights": dict(weights), "replace": replace}
        return self._route("PUT", f"{_path(project, model)}/weights", json=body)

    def set_mirror(self, project: str, model: str, version: str, fraction: float = 1.0) -> ModelRoute:
        return self._route("PUT", f"{_path(project, model, version)}/mirror", json={"fraction": fraction})

    def clear_mirror(self, project: str, model: str, version: str) -> ModelRoute:
        return self._route("DELETE", f"{_path(project, model, version)}/mirror")

    def add_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute:
        return self._route("POST", f"{_path(project, model, version)}/replicas", json={"url": url})

    def remove_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute:
        path = f"{_path(project, model, version)}/replicas"
        return self._route("DELETE", path, params={"url": url})

    def set_replicas(self, project: str, model: str, version: str, urls: Sequence[str]) -> ModelRoute:
        path = f"{_path(project, model, version)}/replicas"
        return self._route("PUT", path, json={"urls": list(urls)})

    def set_options(
        self,
        project: str,
        model: str,
        *,
        timeout_s: float | None = None,
        log_payload: str | None = None,
        log_sample: float | None = None,
        target: Mapping[str, str] | None = None,
    ) -> ModelRoute:
        body = {"timeout_s": timeout_s, "log_payload": log_payload, "log_sample": log_sample}
        sent: dict[str, Any] = {key: value for key, value in body.items() if value is not None}
        if target is not None:
            sent["target"] = dict(target)
        return self._route("PATCH", _path(project, model), json=sent)

    def remove_version(self, project: str, model: str, version: str) -> ModelRoute:
        return self._route("DELETE", _path(project, model, version))

    def delete(self, project: str, model: str) -> None:
        self._send("DELETE", _path(project, model))

    def heartbeat(
        self, project: str, model: str, version: str, url: str, *, ready: bool = True, ttl_s: float = 10.0
    ) -> bool:
        body = {"url": url, "ready": ready, "ttl_s": ttl_s}
        return bool(
            self._send("PUT", f"{_path(project, model, version)}/endpoints", json=body).json()["changed"]
        )

    def deregister(self, project: str, model: str, version: str, url: str) -> None:
        self._send("DELETE", f"{_path(project, model, version)}/endpoints", params={"url": url})

    def endpoints(self) -> builtins.list[Announcement]:
        return [_endpoint(item) for item in self._send("GET", "/routes/_endpoints").json()]

    # -- API keys (/api/v1/keys) --------------------------------------------------------------------

    def create_key(
        self,
        project: str,
        name: str,
        rate_per_s: float | None = None,
        burst: int | None = None,
        *,
        created_by: str = "",
    ) -> tuple[ApiKey, str]:
        """``created_by`` is only what the server records when it runs without access control;
        with it, the caller's token names the creator."""
        body: dict[str, Any] = {"project": project, "name": name, "rate_per_s": rate_per_s, "burst": burst}
        if created_by:
            body["created_by"] = created_by
        data = self._send("POST", "/keys", json=body).json()
        return key_from_dict(data), str(data["key"])

    def list_keys(
        self, project: str | None = None, *, include_revoked: bool = False
    ) -> builtins.list[ApiKey]:
        params: dict[str, str] = {"project": project} if project is not None else {}
        if include_revoked:
            params["include_revoked"] = "true"
        return [key_from_dict(item) for item in self._send("GET", "/keys", params=params).json()]

    def revoke_key(self, key_id: str) -> ApiKey:
        return key_from_dict(self._send("DELETE", f"/keys/{quote(key_id, safe='')}").json())

    def forget_keys(self, project: str) -> int:
        answer = self._send("DELETE", "/keys", params={"project": check_name(project, "project")})
        return int(answer.json()["forgotten"])
