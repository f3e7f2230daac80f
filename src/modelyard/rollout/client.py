"""``RolloutClient``: the rollouts API of a control plane over HTTP (what ``modelyard deploy status``
and ``deploy promote | abort | pause | resume | retry`` use)."""

from __future__ import annotations

import builtins
from typing import Any

from modelyard.web.api_client import ApiClient

__all__ = ["RolloutClient"]


class RolloutClient(ApiClient):
    """Calls ``/api/v1/rollouts``; errors come back as the domain errors the server raised."""

    def __init__(self, url: str, *, timeout: float = 30.0, user: str = "", token: str | None = None) -> None:
        # The user header is only read by a control plane running without access control.
        headers = {"x-modelyard-user": user} if user else {}
        super().__init__(url, prefix="/api/v1", timeout=timeout, headers=headers, token=token)

    def list(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        """A page of rollouts, newest first; ``before``: the id the page goes on from."""
        params = {"limit": limit} | ({"before": before} if before is not None else {})
        return list(self._send("GET", "/rollouts", params=params).json()["rollouts"])

    def latest(self) -> builtins.list[dict[str, Any]]:
        """Each model's newest rollout: every active rollout is among them."""
        return builtins.list(self._send("GET", "/rollouts/latest").json()["rollouts"])

    def events(self, limit: int = 50, before: int | None = None) -> dict[str, Any]:
        """A page of every rollout's transitions, newest first: ``{"events": [...], "next"}``,
        ``next`` the ``before`` of the next page (None after the last)."""
        params = {"limit": limit} | ({"before": before} if before is not None else {})
        return dict(self._send("GET", "/rollouts/events", params=params).json())

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
