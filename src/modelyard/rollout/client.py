"""``RolloutClient``: the rollouts API of a control plane over HTTP (what ``modelyard deploy status``
and ``deploy promote | abort | pause | resume | retry`` use)."""

from __future__ import annotations

from typing import Any

from modelyard.web.api_client import ApiClient

__all__ = ["RolloutClient"]


class RolloutClient(ApiClient):
    """Calls ``/api/v1/rollouts``; errors come back as the domain errors the server raised."""

    def __init__(self, url: str, *, timeout: float = 30.0, user: str = "", token: str | None = None) -> None:
        # The user header is only read by a control plane running without access control.
        headers = {"x-modelyard-user": user} if user else {}
        super().__init__(url, prefix="/api/v1", timeout=timeout, headers=headers, token=token)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._send("GET", "/rollouts", params={"limit": limit}).json()["rollouts"])

    def show(self, project: str, model: str) -> dict[str, Any]:
        return dict(self._send("GET", f"/rollouts/{project}/{model}").json())

    def analysis(self, project: str, model: str) -> dict[str, Any]:
        """The online analysis of the route, the evidence rollouts read (``/api/v1/analysis``)."""
        return dict(self._send("GET", f"/analysis/{project}/{model}").json())

    def act(self, project: str, model: str, action: str, reason: str = "") -> dict[str, Any]:
        """``action``: promote, abort, pause, resume or retry; the model's rollout as it is after it
        (after a retry: the new one)."""
        body = {"reason": reason} if reason else {}
        return dict(self._send("POST", f"/rollouts/{project}/{model}/{action}", json=body).json())
