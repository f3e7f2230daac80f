"""What :class:`Client` and :class:`AsyncClient` share: argument checks, URLs, the retry policy, and
turning an answer (or the lack of one) into a result or a typed error. Only the sending loop is
written twice, once blocking and once with ``await``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from modelyard import __version__
from modelyard.client._tensors import decode_outputs, encode_request
from modelyard.client.errors import (
    ClientError,
    ConnectionFailed,
    InvalidArgument,
    ServerError,
    Timeout,
    Unavailable,
    error_from_response,
)

__all__ = ["RETRY_STATUSES", "BaseClient", "Call", "Failure", "RetryPolicy"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# No response came back, so the server did nothing with the request or at worst started it: safe
# to send again. A read timeout is not here: the server may still be working, and sending the
# request again would only pile more work on a server that is already too slow.
_TRANSIENT: tuple[type[httpx.RequestError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_SEGMENT = re.compile(r"[^\s/]+")  # one URL path segment: no slash, no whitespace


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``retries`` extra attempts; before retry n (1-based) wait ``backoff_s * 2**(n-1)``
    scaled by a random factor in [0.5, 1) (jitter spreads out clients that failed together), or the
    server's ``Retry-After`` when longer; never more than ``max_backoff_s``."""

    retries: int
    backoff_s: float
    max_backoff_s: float

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wait = self.backoff_s * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff_s)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One logical request, sent once per attempt with the same ``x-request-id``."""

    method: str
    path: str
    request_id: str
    target: str | None = None
    version: str | None = None
    body: bytes | None = None
    answers: frozenset[int] = frozenset({200})  # statuses handed back to the caller, not raised
    retry: bool = True

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id}
        if self.body is not None:
            headers["content-type"] = "application/json"
        return headers


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that failed: the error to raise if it is the last, and whether to try again."""

    error: ClientError
    transient: bool
    retry_after: float | None = None

    @classmethod
    def of_response(cls, call: Call, response: httpx.Response, attempt: int) -> Failure | None:
        """None for an answer the caller wants; else the typed error, transient for 429/502/503/504."""
        if response.status_code in call.answers:
            return None
        error = error_from_response(
            response.status_code,
            response.content,
            request_id=response.headers.get("x-request-id", call.request_id),
            attempts=attempt,
            target=call.target,
            version=call.version,
        )
        retry_after = _retry_after(response.headers.get("retry-after"))
        if isinstance(error, Unavailable) and retry_after is not None:
            error.retry_after = retry_after
        return cls(error, call.retry and response.status_code in RETRY_STATUSES, retry_after)

    @classmethod
    def of_exception(cls, call: Call, exc: httpx.RequestError, attempt: int) -> Failure:
        """No usable answer: ConnectionFailed (transient when nothing came back) or Timeout."""
        context: dict[str, Any] = {
            "request_id": call.request_id,
            "attempts": attempt,
            "target": call.target,
            "version": call.version,
        }
        url = _url_of(exc)
        error: ClientError
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            error = Timeout(f"no answer from {url} within the timeout ({exc!r})", **context)
        elif isinstance(exc, httpx.DecodingError):
            error = ServerError(f"undecodable answer from {url}: {exc}", **context)
        else:
            error = ConnectionFailed(f"could not reach {url}: {exc!r}", **context)
        error.__cause__ = exc
        return cls(error, call.retry and isinstance(exc, _TRANSIENT))

    def next_delay(self, policy: RetryPolicy, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when this failure is final."""
        if not self.transient or attempt > policy.retries:
            return None
        return policy.delay(attempt, self.retry_after)


def _url_of(exc: httpx.RequestError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # httpx raises this when the exception carries no request
        return "the server"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds (fractions accepted), or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _segment(value: str, argument: str) -> str:
    if not _SEGMENT.fullmatch(value) or value in (".", ".."):
        raise InvalidArgument(f"{argument} {value!r} is not a valid name", field=argument)
    return quote(value, safe="")


def _version(version: str | int | None) -> str | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, str | int):
        raise InvalidArgument(f"version must be a string or an integer, got {version!r}", field="version")
    return str(version)


def model_path(target: Any, version: str | None, suffix: str = "") -> str:
    """``project/model`` -> the gateway's ``/projects/{p}/models/{m}``; ``model`` -> the model
    server's ``/v2/models/{m}``; then ``/versions/{v}`` when pinned, then ``suffix``."""
    if not isinstance(target, str) or not 1 <= len(parts := target.split("/")) <= 2:
        raise InvalidArgument(
            f"target must be 'project/model' (gateway) or 'model' (model server), got {target!r}",
            field="target",
        )
    path = "/v2/models/" if len(parts) == 1 else f"/projects/{_segment(parts[0], 'target')}/models/"
    path += _segment(parts[-1], "target")
    if version is not None:
        path += f"/versions/{_segment(version, 'version')}"
    return path + suffix


def _check_request_id(request_id: str | None) -> str:
    if request_id is None:
        return uuid.uuid4().hex
    if (
        not isinstance(request_id, str)
        or not request_id
        or not (request_id.isascii() and request_id.isprintable())
    ):
        raise InvalidArgument("request_id must be a non-empty string of printable ASCII", field="request_id")
    return request_id


def _check_settings(url: Any, timeout: Any, retries: Any, backoff_s: Any, max_backoff_s: Any) -> str:
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidArgument(f"url must be an http:// or https:// URL, got {url!r}", field="url")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidArgument(f"retries must be an integer >= 0, got {retries!r}", field="retries")
    for name, value in (("timeout", timeout), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise InvalidArgument(f"{name} must be a number >= 0, got {value!r}", field=name)
    if timeout == 0:
        raise InvalidArgument("timeout must be more than 0 seconds", field="timeout")
    return str(url).rstrip("/")


class BaseClient:
    """Settings, request building and answer decoding shared by Client and AsyncClient."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        backoff_s: float,
        max_backoff_s: float,
        headers: Mapping[str, str] | None,
        token: str | None = None,
    ) -> None:
        self.url = _check_settings(url, timeout, retries, backoff_s, max_backoff_s)
        self.policy = RetryPolicy(retries, float(backoff_s), float(max_backoff_s))
        self._timeout = float(timeout)
        auth = {"authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}
        self._headers = {"user-agent": f"modelyard-client/{__version__}", **auth, **dict(headers or {})}

    def _httpx_options(self, trust_env: bool) -> dict[str, Any]:
        return {
            "base_url": self.url,
            "timeout": self._timeout,
            "headers": self._headers,
            "trust_env": trust_env,
        }

    def _infer_call(
        self,
        target: str,
        inputs: Mapping[str, Any],
        version: str | int | None,
        outputs: Sequence[str] | None,
        request_id: str | None,
        parameters: Mapping[str, Any] | None,
    ) -> Call:
        pinned = _version(version)
        path = model_path(target, pinned, "/infer")
        request_id = _check_request_id(request_id)
        body = encode_request(inputs, outputs, request_id, parameters)
        return Call("POST", path, request_id, target, pinned, body)

    def _metadata_call(self, target: str, version: str | int | None) -> Call:
        pinned = _version(version)
        return Call("GET", model_path(target, pinned), _check_request_id(None), target, pinned)

    def _ready_call(self, target: str | None, version: str | int | None) -> Call:
        # 503 is the "not ready" answer, not an error; and a readiness check must answer now, so
        # it never waits between retries.
        answers = frozenset({200, 503})
        if target is None:
            if version is not None:
                raise InvalidArgument("version needs a target", field="version")
            return Call("GET", "/v2/health/ready", _check_request_id(None), answers=answers, retry=False)
        pinned = _version(version)
        gateway = isinstance(target, str) and "/" in target  # the gateway's model resource answers
        path = model_path(target, pinned, "" if gateway else "/ready")
        return Call("GET", path, _check_request_id(None), target, pinned, answers=answers, retry=False)

    @staticmethod
    def _outputs(call: Call, response: httpx.Response) -> dict[str, np.ndarray]:
        try:
            return decode_outputs(orjson.loads(response.content))
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError too
            raise _malformed(call, response, exc) from None

    @staticmethod
    def _document(call: Call, response: httpx.Response) -> dict[str, Any]:
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _malformed(call, response, exc) from None
        if not isinstance(doc, dict):
            raise _malformed(call, response, ValueError(f"expected a JSON object, got {type(doc).__name__}"))
        return doc


def _malformed(call: Call, response: httpx.Response, exc: ValueError) -> ServerError:
    return ServerError(
        f"malformed answer to {call.method} {call.path}: {exc}",
        status=response.status_code,
        request_id=response.headers.get("x-request-id", call.request_id),
        target=call.target,
        version=call.version,
    )
