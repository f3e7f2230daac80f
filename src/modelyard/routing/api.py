"""``RoutesAPI``: what both :class:`RouteStore` (the database) and :class:`RouteClient` (REST) offer.

``modelyard route ...`` is written against this Protocol, so it works the same on the local
database and against a control-plane server.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Protocol

from modelyard.routing.discovery import Announcement
from modelyard.routing.keys import ApiKey
from modelyard.routing.table import ModelRoute

__all__ = ["RoutesAPI"]


class RoutesAPI(Protocol):
    """Reading and changing the routing table; every change raises the table's revision."""

    def close(self) -> None: ...

    def get(self, project: str, model: str) -> ModelRoute: ...

    def list(self) -> builtins.list[ModelRoute]: ...

    def set_weights(
        self, project: str, model: str, weights: Mapping[str, int], *, replace: bool = True
    ) -> ModelRoute: ...

    def set_mirror(self, project: str, model: str, version: str, fraction: float = 1.0) -> ModelRoute: ...

    def clear_mirror(self, project: str, model: str, version: str) -> ModelRoute: ...

    def add_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute: ...

    def remove_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute: ...

    def set_replicas(self, project: str, model: str, version: str, urls: Sequence[str]) -> ModelRoute: ...

    def set_options(
        self,
        project: str,
        model: str,
        *,
        timeout_s: float | None = None,
        log_payload: str | None = None,
        log_sample: float | None = None,
        target: Mapping[str, str] | None = None,
    ) -> ModelRoute: ...

    def remove_version(self, project: str, model: str, version: str) -> ModelRoute: ...

    def delete(self, project: str, model: str) -> None: ...

    # Announcement discovery: replicas announce themselves (discovery.py).
    def heartbeat(
        self, project: str, model: str, version: str, url: str, *, ready: bool = True, ttl_s: float = 10.0
    ) -> bool: ...

    def deregister(self, project: str, model: str, version: str, url: str) -> None: ...

    def endpoints(self) -> builtins.list[Announcement]: ...

    # Per-project API keys for inference at the gateway (keys.py): the key is returned once.
    def create_key(
        self,
        project: str,
        name: str,
        rate_per_s: float | None = None,
        burst: int | None = None,
        *,
        created_by: str = "",
    ) -> tuple[ApiKey, str]: ...

    def list_keys(
        self, project: str | None = None, *, include_revoked: bool = False
    ) -> builtins.list[ApiKey]: ...

    def revoke_key(self, key_id: str) -> ApiKey: ...

    def forget_keys(self, project: str) -> int: ...
