"""One request's trip to the replicas of its version: attempts, retries, deadline — as callbacks.

An :class:`Exchange` tries a replica; a connect failure, a reset before any answer, or a 503
moves it to the next replica of the same version (up to ``retries`` more), a timeout ends it with
504, and when no replica could be reached it ends with 502. It calls ``on_done`` exactly once, with
the answer to send (errors included), already marked with its route, version and mirrors.
Written as callbacks rather than a coroutine because, at tens of microseconds per hop, a task and
its futures per request were a measurable share of the gateway's whole cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from modelyard.errors import BadGateway, DeadlineExceeded, ModelyardError
from modelyard.gateway.choice import Choice
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.router import Router
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.upstream import Upstream, UpstreamError, UpstreamFailure, UpstreamResponse

__all__ = ["Exchange", "ExchangeHost"]


class ExchangeHost(Protocol):
    """What an exchange uses of the gateway that started it (``proxy.Gateway``): the retry limit,
    the metrics it counts attempts in, the replica client, and the router in use when it ends (for
    the mirrors). Declared here so that this module needs nothing above it."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    upstream: Upstream
    router: Router


class Exchange:
    """See the module docstring; ``start()`` sends the first attempt."""

    __slots__ = (
        "attempts",
        "choice",
        "deadline",
        "gateway",
        "last",
        "mirrored",
        "on_done",
        "path",
        "request",
        "sent_at",
        "tried",
    )

    def __init__(
        self,
        gateway: ExchangeHost,
        request: GatewayRequest,
        choice: Choice,
        on_done: Callable[[GatewayResponse], None],
        *,
        mirrored: bool = True,
    ) -> None:
        self.gateway = gateway
        self.request = request
        self.choice = choice
        self.on_done = on_done
        self.mirrored = mirrored  # False for a mirrored copy itself: copies are not copied again
        self.deadline = request.started + choice.route.timeout_s
        self.path = choice.paths[request.protocol]
        self.tried: list[str] = []
        self.attempts = 0
        self.last: UpstreamResponse | None = None
        self.sent_at = 0.0

    def start(self) -> None:
        url = self.choice.pool.pick(self.tried)
        if url is None or self.attempts > self.gateway.settings.retries:
            self._give_up()
            return
        now = time.perf_counter()
        remaining = self.deadline - now
        if remaining <= 0:
            self._deadline_passed()
            return
        if self.attempts:
            reason = "unavailable" if self.last is not None else "connect"
            self.gateway.metrics.retried(self.choice, reason)
        self.attempts += 1
        self.tried.append(url)
        self.sent_at = now
        self.choice.pool.sent(url)
        request = self.request
        self.gateway.upstream.send(
            url, request.method, self.path, request.headers, request.body, remaining, self._answered
        )

    def _answered(self, response: UpstreamResponse | None, error: UpstreamError | None) -> None:
        url = self.tried[-1]
        pool = self.choice.pool
        pool.returned(url)
        elapsed = time.perf_counter() - self.sent_at
        if error is not None:
            timed_out = error.failure is UpstreamFailure.TIMEOUT
            self.gateway.metrics.attempted(self.choice, url, "timeout" if timed_out else "error", elapsed)
            pool.failed(url)
            if timed_out:
                self._deadline_passed()
                return
            self.last = None
            self.start()
            return
        assert response is not None
        self.gateway.metrics.attempted(self.choice, url, str(response.status), elapsed)
        self.last = response
        if response.status == 503:
            pool.failed(url)
            self.start()
            return
        pool.succeeded(url)
        self._finish(response, url)

    def _finish(self, upstream: UpstreamResponse, url: str) -> None:
        choice = self.choice
        response = GatewayResponse(
            upstream.status,
            upstream.headers,
            upstream.body,
            choice.version.version,
            url,
            choice.route,
            version_headers=choice.version_headers,
        )
        self._done(response)

    def _done(self, response: GatewayResponse) -> None:
        request = self.request
        if self.mirrored and request.protocol != "metadata":
            response.mirrors = self.gateway.router.mirrors(request.project, request.model, response.version)
        self.on_done(response)

    def _failed(self, error: ModelyardError) -> None:
        self._done(error_response(error, self.choice))

    def _give_up(self) -> None:
        if self.last is not None:  # only 503s: pass the last one through, the caller may retry
            self._finish(self.last, self.tried[-1])
            return
        what = f"{self.request.project}/{self.request.model} version {self.choice.version.version}"
        self._failed(
            BadGateway(f"no replica of {what} could be reached (tried {len(self.tried)})", field="version")
        )

    def _deadline_passed(self) -> None:
        what = f"{self.request.project}/{self.request.model}"
        self._failed(DeadlineExceeded(what, self.choice.route.timeout_s))
