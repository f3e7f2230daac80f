"""The base of our own HTTP clients (registry, routes, deploy): one connection pool, a context
manager, and answers of 400 and above raised as the domain errors the server described."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Self

import httpx

from modelyard.web.errors import error_from_body

__all__ = ["TOKEN_ENV", "ApiClient"]

TOKEN_ENV = "MODELYARD_TOKEN"


class ApiClient:
    """Talks to ``base_url`` + ``prefix`` (``http://host:port`` + ``/api/v1``); close() or use ``with``.

    ``token`` is sent as ``Authorization: Bearer``; None reads ``$MODELYARD_TOKEN`` (empty: none).
    """

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/api/v1",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        headers = {
            **(headers or {}),
            **({"authorization": f"Bearer {token.strip()}"} if token.strip() else {}),
        }
        # httpx ends a base URL with "/", so a collection's own name is part of each path.
        self._http = httpx.Client(
            base_url=f"{self.base_url}{prefix}", timeout=timeout, transport=transport, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _send(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """One request; a status of 400 or more (unless listed in ``ok``) raises its domain error."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400 and response.status_code not in ok:
            raise error_from_body(response.status_code, response.content)
        return response
