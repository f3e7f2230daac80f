"""``TokenClient``: the token API of a control plane over HTTP (what ``modelyard token`` uses)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelyard.web.api_client import ApiClient

__all__ = ["TokenClient"]


class TokenClient(ApiClient):
    """Calls ``/api/v1/tokens`` and ``/api/v1/whoami`` with ``token`` (default ``$MODELYARD_TOKEN``)."""

    def __init__(self, url: str, *, timeout: float = 30.0, token: str | None = None) -> None:
        super().__init__(url, timeout=timeout, token=token)

    def create(self, name: str, role: str, expires_in_s: int | None = None) -> dict[str, Any]:
        """The new token's record with the token itself under ``"token"`` (shown this once)."""
        body: dict[str, Any] = {"name": name, "role": role, "expires_in_s": expires_in_s}
        return dict(self._send("POST", "/tokens", json=body).json())

    def list(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Every active token's record (with ``include_revoked``, the revoked ones too)."""
        params = {"include_revoked": "true"} if include_revoked else {}
        return list(self._send("GET", "/tokens", params=params).json())

    def revoke(self, id_or_name: str) -> dict[str, Any]:
        """Revoke the token with that id, or the active one with that name; its record."""
        return dict(self._send("DELETE", f"/tokens/{quote(id_or_name, safe='')}").json())

    def whoami(self) -> dict[str, Any]:
        """``{"name", "role", "authenticated"}``: who the control plane takes this client for."""
        return dict(self._send("GET", "/whoami").json())
