"""``DeployClient``: the deploy API of a control plane over HTTP (what ``modelyard deploy`` uses)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from modelyard.protocols.errors import error_from_body

__all__ = ["DEFAULT_CONTROL_URL", "DeployClient"]

DEFAULT_CONTROL_URL = "http://127.0.0.1:8090"  # where `modelyard up` and `registry serve` listen


class DeployClient:
    """Calls ``/api/v1/deploy``; errors come back as the domain errors the server raised.

    A failed apply is not an exception: it answers 422 with the record and the log, which
    :meth:`apply` returns like a successful one (``"ok": false``)."""

    def __init__(self, url: str = DEFAULT_CONTROL_URL, *, timeout: float = 900.0, user: str = "") -> None:
        headers = {"x-modelyard-user": user} if user else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1/deploy", timeout=timeout, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DeployClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _send(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code not in ok:
            raise error_from_body(response.status_code, response.content)
        return response.json()

    def diff(self, text: str, source: str = "") -> dict[str, Any]:
        return dict(self._send("POST", "/diff", content=text.encode(), params={"source": source}))

    def apply(self, text: str, source: str = "") -> dict[str, Any]:
        return dict(
            self._send("POST", "/apply", ok=(200, 422), content=text.encode(), params={"source": source})
        )

    def rollback(self, apply_id: int) -> dict[str, Any]:
        return dict(self._send("POST", f"/rollback/{apply_id}", ok=(200, 422)))

    def status(self) -> dict[str, Any]:
        return dict(self._send("GET", "/status"))

    def history(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before else {})
        return list(self._send("GET", "/history", params=params))

    def record(self, apply_id: int) -> dict[str, Any]:
        return dict(self._send("GET", f"/history/{apply_id}"))
