"""``DeployClient``: the deploy API of a control plane over HTTP (what ``modelyard deploy`` uses)."""

from __future__ import annotations

from typing import Any

from modelyard.web.api_client import ApiClient

__all__ = ["DEFAULT_CONTROL_URL", "DeployClient"]

DEFAULT_CONTROL_URL = "http://127.0.0.1:8090"  # where `modelyard up` and `registry serve` listen
_YAML = {"content-type": "application/yaml"}


class DeployClient(ApiClient):
    """Calls ``/api/v1/deploy``; errors come back as the domain errors the server raised.

    A failed apply is not an exception: it answers 422 with the record and the log, which
    :meth:`apply` returns like a successful one (``"ok": false``)."""

    def __init__(
        self,
        url: str = DEFAULT_CONTROL_URL,
        *,
        timeout: float = 900.0,
        user: str = "",
        token: str | None = None,
    ) -> None:
        # The user header is only read by a control plane running without access control.
        headers = {"x-modelyard-user": user} if user else {}
        super().__init__(url, prefix="/api/v1/deploy", timeout=timeout, headers=headers, token=token)

    def diff(self, text: str, source: str = "") -> dict[str, Any]:
        response = self._send(
            "POST", "/diff", content=text.encode(), headers=_YAML, params={"source": source}
        )
        return dict(response.json())

    def apply(self, text: str, source: str = "") -> dict[str, Any]:
        params = {"source": source}
        response = self._send(
            "POST", "/apply", ok=(422,), content=text.encode(), headers=_YAML, params=params
        )
        return dict(response.json())

    def rollback(self, apply_id: int) -> dict[str, Any]:
        return dict(self._send("POST", f"/rollback/{apply_id}", ok=(422,)).json())

    def status(self) -> dict[str, Any]:
        return dict(self._send("GET", "/status").json())

    def history(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before else {})
        return list(self._send("GET", "/history", params=params).json())

    def record(self, apply_id: int) -> dict[str, Any]:
        return dict(self._send("GET", f"/history/{apply_id}").json())
