"""The gateway's transport-free core: pick a version and a replica, forward, retry, mirror, log.

A front end hands a :class:`GatewayRequest` to :meth:`Gateway.dispatch` with a completion
callback (or awaits :meth:`Gateway.handle`), sends the answer, and only then calls
:meth:`Gateway.finish`, which records metrics and queues the mirrored copies and the
inference-log records: neither can delay the caller.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable

import xxhash

from modelyard.errors import ModelyardError
from modelyard.gateway.balance import ReplicaPool
from modelyard.gateway.choice import Choice
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.logs import InferenceLog, LogShipper, Role
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.mirror import MirrorQueue
from modelyard.gateway.router import Router
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.upstream import Upstream
from modelyard.routing.table import RoutingTable

__all__ = ["Gateway"]

log = logging.getLogger("modelyard.gateway")
OnAnswer = Callable[[GatewayResponse], None]


class Gateway:
    """One worker's gateway: the live :class:`Router`, upstream pools, mirror queue, log shipper."""

    def __init__(
        self,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        upstream: Upstream,
        shipper: LogShipper | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.upstream = upstream
        self.shipper = shipper
        self.router = Router(RoutingTable(), self._make_pool)
        self.mirror = MirrorQueue(
            self._send_mirror, capacity=settings.mirror_queue, concurrency=settings.mirror_concurrency
        )
        self.loaded = False  # a routing table has been read at least once

    def _make_pool(self, project: str, model: str, version: str, urls: tuple[str, ...]) -> ReplicaPool:
        def on_eject(url: str) -> None:
            log.warning("ejected replica %s of %s/%s version %s", url, project, model, version)
            self.metrics.ejections.labels(project, model, version, url).inc()

        s = self.settings
        return ReplicaPool(
            urls, failure_threshold=s.failure_threshold, eject_s=s.eject_s, max_eject_s=s.max_eject_s,
            on_eject=on_eject,
        )  # fmt: skip

    def update(self, table: RoutingTable) -> bool:
        """Swap in ``table`` if it is newer; requests in flight keep the router they started with."""
        self.loaded = True
        if table.revision == self.router.revision and self.router.table.routes:
            return False
        self.router = Router(table, self._make_pool, self.router)
        self.upstream.forget(self.router.replica_urls())
        self.metrics.revision.set(table.revision)
        self.metrics.reloads.inc()
        return True

    def dispatch(self, request: GatewayRequest, on_answer: OnAnswer) -> None:
        """Route and forward ``request``; ``on_answer`` gets the answer (errors included) once."""
        try:
            choice = self.router.choose(request.project, request.model, request.version)
        except ModelyardError as exc:
            on_answer(error_response(exc))
            return
        Exchange(self, request, choice, on_answer).start()

    async def handle(self, request: GatewayRequest) -> GatewayResponse:
        """:meth:`dispatch` as a coroutine, for front ends that are coroutines anyway (ASGI)."""
        waiter: asyncio.Future[GatewayResponse] = asyncio.get_running_loop().create_future()

        def answered(response: GatewayResponse) -> None:
            if not waiter.done():
                waiter.set_result(response)

        self.dispatch(request, answered)
        return await waiter

    def finish(self, request: GatewayRequest, response: GatewayResponse) -> None:
        """After the answer was sent: metrics, the inference log, mirrored copies."""
        elapsed = time.perf_counter() - request.started
        route = response.route
        if route is None:  # never routed: no names from the caller's URL become label values
            self.metrics.answered_unrouted(response.status, elapsed)
        else:
            self.metrics.answered(route.project, route.model, response.version, response.status, elapsed)
        logged = route is not None and self.shipper is not None and random.random() < route.log_sample
        if logged:
            self._log(request, response, "primary", elapsed)
        for mirror in response.mirrors:
            if not self.mirror.offer((request, mirror, logged)):
                self.metrics.mirrored(mirror, "dropped")

    def _send_mirror(self, job: tuple[GatewayRequest, Choice, bool], finished: Callable[[], None]) -> None:
        request, choice, logged = job
        copy = GatewayRequest(
            request.protocol, request.project, request.model, request.version, request.method,
            [*request.headers, (b"x-modelyard-mirror", b"1")], request.body, request.request_id,
            request.received, time.perf_counter(),
        )  # fmt: skip

        def done(response: GatewayResponse) -> None:
            try:
                self.metrics.mirrored(choice, "sent" if response.status < 500 else "failed")
                if logged:
                    self._log(copy, response, "mirror", time.perf_counter() - copy.started)
            finally:
                finished()

        Exchange(self, copy, choice, done, mirrored=False).start()

    def _log(self, request: GatewayRequest, response: GatewayResponse, role: Role, elapsed: float) -> None:
        assert self.shipper is not None
        assert response.route is not None
        mode = response.route.log_payload
        request_hash = response_hash = request_body = response_body = None
        if mode != "none":
            # xxh3: ~0.3 µs for 10 KB where sha256 takes ~9 µs; these hashes match payloads (the
            # mirror's answer against the primary's), they are not a security boundary.
            request_hash = xxhash.xxh3_128_hexdigest(request.body)
            response_hash = xxhash.xxh3_128_hexdigest(response.body)
            if mode == "full":
                request_body, response_body = _text(request.body), _text(response.body)
        # Positional, in the dataclass's field order: keywords cost four times as much here.
        record = InferenceLog(
            request.received, request.request_id, request.project, request.model, response.version,
            response.replica, role, request.protocol, response.status, int(elapsed * 1e6) / 1000,
            len(request.body), len(response.body), request_hash, response_hash, request_body,
            response_body, response.error,
        )  # fmt: skip
        self.shipper.submit(record)


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(body).decode()
