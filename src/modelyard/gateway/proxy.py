"""The gateway's transport-free core: pick a version and a replica, forward, retry, mirror, log.

The ASGI adapter (``gateway/app.py``) turns HTTP into a :class:`GatewayRequest`, awaits
:meth:`Gateway.handle`, sends the answer, and only then calls :meth:`Gateway.finish`, which queues
the mirrored copies and the inference-log records: neither can delay the caller.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import random
import time

import xxhash

from modelyard.errors import BadGateway, DeadlineExceeded, ModelyardError
from modelyard.gateway.balance import ReplicaPool
from modelyard.gateway.logs import InferenceLog, LogShipper
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.mirror import MirrorQueue
from modelyard.gateway.router import Choice, Router
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.table import ModelRoute, RoutingTable
from modelyard.gateway.upstream import Upstream, UpstreamError, UpstreamFailure, UpstreamResponse
from modelyard.protocols.errors import error_body, error_headers, status_for

__all__ = ["Gateway", "GatewayRequest", "GatewayResponse"]

log = logging.getLogger("modelyard.gateway")

# The replica-side path of each gateway endpoint; {target} is the model's name on the replica.
UPSTREAM_PATHS = {
    "v2": "/v2/models/{target}/infer",
    "tfserving": "/v1/models/{target}:predict",
    "metadata": "/v2/models/{target}",
}
JSON = (b"content-type", b"application/json")


@dataclasses.dataclass(slots=True)
class GatewayRequest:
    protocol: str  # a key of UPSTREAM_PATHS
    project: str
    model: str
    version: str | None  # None: pick by weight
    method: str
    headers: list[tuple[bytes, bytes]]  # lower-case names, forwarded as they are (less hop-by-hop)
    body: bytes
    request_id: str
    received: float = dataclasses.field(default_factory=time.time)
    started: float = dataclasses.field(default_factory=time.perf_counter)


@dataclasses.dataclass(slots=True)
class GatewayResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: str = ""  # the version that answered
    replica: str = ""
    route: ModelRoute | None = None
    error: str | None = None
    mirrors: list[Choice] = dataclasses.field(default_factory=list)


def error_response(
    error: ModelyardError, version: str = "", route: ModelRoute | None = None
) -> GatewayResponse:
    headers = [JSON, *((k.encode(), v.encode()) for k, v in error_headers(error).items())]
    return GatewayResponse(status_for(error), headers, error_body(error), version, "", route, error.message)


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
            self._run_mirror, capacity=settings.mirror_queue, concurrency=settings.mirror_concurrency
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

    async def handle(self, request: GatewayRequest) -> GatewayResponse:
        """Answer one request; never raises (errors become answers in the one error schema)."""
        try:
            choice = self.router.choose(request.project, request.model, request.version)
        except ModelyardError as exc:
            return error_response(exc)
        try:
            response = await self._forward(request, choice, choice.route.timeout_s)
        except ModelyardError as exc:
            response = error_response(exc, choice.version.version, choice.route)
        response.route = choice.route
        response.version = choice.version.version
        if request.protocol != "metadata":
            response.mirrors = self.router.mirrors(request.project, request.model, response.version)
        return response

    async def _forward(self, request: GatewayRequest, choice: Choice, timeout_s: float) -> GatewayResponse:
        """Try replicas of the chosen version: connect failures, resets and 503s move to the next."""
        deadline = request.started + timeout_s
        path = UPSTREAM_PATHS[request.protocol].format(target=choice.version.target or request.model)
        tried: list[str] = []
        last: UpstreamResponse | None = None
        for attempt in range(self.settings.retries + 1):
            url = choice.pool.pick(tried)
            if url is None:
                break
            if attempt:
                self._count_retry(choice, last)
            tried.append(url)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise DeadlineExceeded(f"{request.project}/{request.model}", timeout_s)
            try:
                last = await self._attempt(request, choice, url, path, remaining)
            except UpstreamError as exc:
                choice.pool.failed(url)
                if exc.failure is UpstreamFailure.TIMEOUT:
                    raise DeadlineExceeded(f"{request.project}/{request.model}", timeout_s) from None
                last = None
                continue
            if last.status != 503:
                choice.pool.succeeded(url)
                return self._answer(last, choice, url)
            choice.pool.failed(url)
        if last is not None:
            return self._answer(last, choice, tried[-1])
        what = f"{request.project}/{request.model} version {choice.version.version}"
        raise BadGateway(f"no replica of {what} could be reached (tried {len(tried)})", field="version")

    async def _attempt(
        self, request: GatewayRequest, choice: Choice, url: str, path: str, timeout_s: float
    ) -> UpstreamResponse:
        started = time.perf_counter()
        labels = (choice.route.project, choice.route.model, choice.version.version, url)
        try:
            response = await self.upstream.request(
                url, request.method, path, request.headers, request.body, timeout_s
            )
        except UpstreamError as exc:
            code = "timeout" if exc.failure is UpstreamFailure.TIMEOUT else "error"
            self.metrics.attempted(*labels, code, time.perf_counter() - started)
            raise
        self.metrics.attempted(*labels, str(response.status), time.perf_counter() - started)
        return response

    def _count_retry(self, choice: Choice, last: UpstreamResponse | None) -> None:
        reason = "unavailable" if last is not None else "connect"
        self.metrics.retries.labels(
            choice.route.project, choice.route.model, choice.version.version, reason
        ).inc()

    def _answer(self, upstream: UpstreamResponse, choice: Choice, url: str) -> GatewayResponse:
        return GatewayResponse(upstream.status, upstream.headers, upstream.body, choice.version.version, url)

    def finish(self, request: GatewayRequest, response: GatewayResponse) -> None:
        """After the answer was sent: metrics, the inference log, mirrored copies."""
        elapsed = time.perf_counter() - request.started
        version = response.version if response.route is not None else ""
        project = request.project if response.route is not None else ""
        model = request.model if response.route is not None else ""
        self.metrics.answered(project, model, version, response.status, elapsed)
        route = response.route
        logged = route is not None and self.shipper is not None and random.random() < route.log_sample
        if logged:
            self._log(request, response, "primary", elapsed)
        for mirror in response.mirrors:
            if not self.mirror.offer((request, mirror, logged)):
                labels = (request.project, request.model, mirror.version.version, "dropped")
                self.metrics.mirrored.labels(*labels).inc()

    async def _run_mirror(self, job: tuple[GatewayRequest, Choice, bool]) -> None:
        request, choice, logged = job
        started = time.perf_counter()
        headers = [*request.headers, (b"x-modelyard-mirror", b"1")]
        copy = dataclasses.replace(request, headers=headers, started=started)
        try:
            response = await self._forward(copy, choice, choice.route.timeout_s)
            outcome = "sent" if response.status < 500 else "failed"
        except ModelyardError as exc:
            response = error_response(exc, choice.version.version, choice.route)
            outcome = "failed"
        self.metrics.mirrored.labels(request.project, request.model, choice.version.version, outcome).inc()
        if logged:
            response.route = choice.route
            response.version = choice.version.version
            self._log(copy, response, "mirror", time.perf_counter() - started)

    def _log(self, request: GatewayRequest, response: GatewayResponse, role: str, elapsed: float) -> None:
        assert self.shipper is not None
        assert response.route is not None
        record = InferenceLog(
            time=request.received, request_id=request.request_id, project=request.project,
            model=request.model, version=response.version, replica=response.replica,
            role="mirror" if role == "mirror" else "primary", protocol=request.protocol,
            status=response.status, latency_ms=round(elapsed * 1000, 3),
            request_bytes=len(request.body), response_bytes=len(response.body), error=response.error,
        )  # fmt: skip
        mode = response.route.log_payload
        if mode != "none":
            # xxh3: ~0.3 µs for 10 KB where sha256 takes ~9 µs; these hashes match payloads (the
            # mirror's answer against the primary's), they are not a security boundary.
            record.request_hash = xxhash.xxh3_128_hexdigest(request.body)
            record.response_hash = xxhash.xxh3_128_hexdigest(response.body)
        if mode == "full":
            record.request_body = _text(request.body)
            record.response_body = _text(response.body)
        self.shipper.submit(record)


def _text(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(body).decode()
