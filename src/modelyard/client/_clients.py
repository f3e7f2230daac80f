"""``Client`` (blocking, on one ``httpx.Client``) and ``AsyncClient`` (on one ``httpx.AsyncClient``).

Both are thin: everything but sending and sleeping lives in ``_core.BaseClient``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from modelyard.client._core import BaseClient, Call, Failure
from modelyard.client.errors import ConnectionFailed, Timeout

__all__ = ["API_KEY_ENV", "AsyncClient", "Client"]

# Not MODELYARD_TOKEN: that is an operator's control-plane token, which must never travel with
# inference requests to replicas (a project without keys forwards Authorization to its models).
API_KEY_ENV = "MODELYARD_API_KEY"


class Client(BaseClient):
    """Inference over HTTP, to the modelyard gateway or straight to a model server.

    Args:
        url: the gateway's or model server's base URL, e.g. ``http://gateway:8000`` (a path prefix
            such as ``http://host/ml`` is kept).
        timeout: seconds to wait for each attempt's connection and answer.
        retries: extra attempts after a transient failure (connection refused or reset before an
            answer, 429, 502, 503, 504); 0 sends each request once.
        backoff_s: the first retry's back-off; it doubles for each retry after that, with jitter.
        max_backoff_s: the longest wait before a retry, even when the server's ``Retry-After``
            asks for more.
        headers: sent with every request.
        api_key: a gateway API key (``modelyard key create``), sent as ``Authorization: Bearer``;
            None reads ``$MODELYARD_API_KEY``, and an empty value sends none.
        trust_env: honour ``HTTP_PROXY``/``NO_PROXY``... from the environment, as httpx does.

    One connection pool serves every call: reuse one client (it is thread-safe) and close it, or
    use it as a context manager::

        with modelyard.Client("http://gateway:8000") as client:
            scores = client.predict("mail/spam", {"text": np.array(["win a prize"])})["score"]
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        headers: Mapping[str, str] | None = None,
        trust_env: bool = True,
        api_key: str | None = None,
    ) -> None:
        super().__init__(
            url,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            headers=headers,
            token=os.environ.get(API_KEY_ENV, "") if api_key is None else api_key,
        )
        self._http = httpx.Client(**self._httpx_options(trust_env))

    def predict(
        self,
        target: str,
        inputs: Mapping[str, Any],
        *,
        version: str | int | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``target`` on ``inputs`` and return its output tensors by name.

        ``target`` is ``"project/model"`` (through the gateway) or ``"model"`` (a model server's own
        ``/v2/models/{model}/infer``). ``inputs`` maps each input name to a numpy array, or to
        anything ``numpy.asarray`` takes; the datatype follows the dtype (str/bytes arrays are
        ``BYTES``). ``version`` pins a version; ``outputs`` selects outputs; ``request_id`` is sent
        as ``x-request-id`` (one is generated otherwise); ``parameters`` become the request's OIP
        ``parameters``. ``BYTES`` outputs come back as object arrays of ``bytes``.
        """
        call = self._infer_call(target, inputs, version, outputs, request_id, parameters)
        return self._outputs(call, self._send(call))

    def metadata(self, target: str, version: str | int | None = None) -> dict[str, Any]:
        """The model's metadata document (name, versions, platform, inputs, outputs)."""
        call = self._metadata_call(target, version)
        return self._document(call, self._send(call))

    def ready(self, target: str | None = None, *, version: str | int | None = None) -> bool:
        """Whether the server (no ``target``: ``GET /v2/health/ready``) or a model is ready.

        False when it answers 503 or cannot be reached; one attempt, no retries. A gateway target
        asks ``GET /projects/{p}/models/{m}``. Other errors (an unknown model: 404) raise.
        """
        call = self._ready_call(target, version)
        try:
            return self._send(call).status_code == 200
        except (ConnectionFailed, Timeout) as exc:
            if exc.status is not None:  # a 504 answer is an error like any other
                raise
            return False

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, content=call.body, headers=call.headers()
                )
            except httpx.RequestError as exc:
                failure = Failure.of_exception(call, exc, attempt)
            else:
                found = Failure.of_response(call, response, attempt)
                if found is None:
                    return response
                failure = found
            delay = failure.next_delay(self.policy, attempt)
            if delay is None:
                raise failure.error
            time.sleep(delay)
            attempt += 1


class AsyncClient(BaseClient):
    """:class:`Client` for asyncio: the same arguments and methods, awaited.

    ::

        async with modelyard.AsyncClient("http://gateway:8000") as client:
            outputs = await client.predict("mail/spam", {"text": np.array(["win a prize"])})
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        headers: Mapping[str, str] | None = None,
        trust_env: bool = True,
        api_key: str | None = None,
    ) -> None:
        super().__init__(
            url,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            headers=headers,
            token=os.environ.get(API_KEY_ENV, "") if api_key is None else api_key,
        )
        self._http = httpx.AsyncClient(**self._httpx_options(trust_env))

    async def predict(
        self,
        target: str,
        inputs: Mapping[str, Any],
        *,
        version: str | int | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """See :meth:`Client.predict`."""
        call = self._infer_call(target, inputs, version, outputs, request_id, parameters)
        return self._outputs(call, await self._send(call))

    async def metadata(self, target: str, version: str | int | None = None) -> dict[str, Any]:
        """See :meth:`Client.metadata`."""
        call = self._metadata_call(target, version)
        return self._document(call, await self._send(call))

    async def ready(self, target: str | None = None, *, version: str | int | None = None) -> bool:
        """See :meth:`Client.ready`."""
        call = self._ready_call(target, version)
        try:
            return (await self._send(call)).status_code == 200
        except (ConnectionFailed, Timeout) as exc:
            if exc.status is not None:
                raise
            return False

    async def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        await self._http.aclose()

    aclose = close  # httpx's name for it

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 1
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, content=call.body, headers=call.headers()
                )
            except httpx.RequestError as exc:
                failure = Failure.of_exception(call, exc, attempt)
            else:
                found = Failure.of_response(call, response, attempt)
                if found is None:
                    return response
                failure = found
            delay = failure.next_delay(self.policy, attempt)
            if delay is None:
                raise failure.error
            await asyncio.sleep(delay)
            attempt += 1
