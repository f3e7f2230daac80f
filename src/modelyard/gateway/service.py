"""One gateway worker, independent of the HTTP front end that feeds it.

:class:`GatewayService` owns the worker's :class:`Gateway` core, its log shipper and the task that
keeps the routing table fresh. Both front ends — the ASGI app (``gateway/app.py``, for tests and
any ASGI server) and the raw HTTP/1.1 server (``gateway/http1.py``, what ``modelyard gateway
serve`` runs) — call the same three steps: :meth:`admit` once the head is read; once the body is,
:meth:`serve` (a coroutine, for ASGI) or :meth:`dispatch` (a callback, for the raw server); and
after the answer went out, :meth:`Gateway.finish` (after ``serve``) or :meth:`finish` (after
``dispatch``, which also ends the request's in-flight count).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from modelyard.errors import (
    ErrorKind,
    InvalidInput,
    MethodNotAllowed,
    ModelyardError,
    Overloaded,
    PayloadTooLarge,
    RouteNotFound,
)
from modelyard.gateway.idlepoll import IdlePoller
from modelyard.gateway.logs import LogShipper, LogSink, open_sink
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from modelyard.gateway.proxy import Gateway
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.upstream import HOP_BY_HOP, Upstream
from modelyard.gateway.writes import WriteBatcher
from modelyard.routing.table import RoutingTable, route_to_dict

__all__ = ["GatewayService", "TableSource", "parse_path", "response_headers"]

log = logging.getLogger("modelyard.gateway")
# Each worker's metrics snapshot for the others' scrapes (metrics_share.py): ≈2 ms of work, so
# once a second rather than at every routing poll; scrapes come every 15 s or so anyway.
PUBLISH_INTERVAL_S = 1.0
Headers = list[tuple[bytes, bytes]]


class TableSource(Protocol):
    """Where the routing table comes from: the control-plane database (``RouteStore``) or a routes
    file (``RouteFile``, ``--routes``). :meth:`revision` is polled and :meth:`load` called when it
    moved; either raises when the table cannot be read, and the worker keeps the table it has."""

    def revision(self) -> int: ...

    def load(self) -> RoutingTable: ...


def parse_path(path: str) -> tuple[str, str, str, str | None] | None:
    """``(protocol, project, model, version)`` for a gateway model path, else None."""
    if not path.startswith("/projects/"):
        return None
    protocol = "metadata"
    if path.endswith(":predict"):
        protocol, path = "tfserving", path[: -len(":predict")]
    elif path.endswith("/infer"):
        protocol, path = "v2", path[: -len("/infer")]
    parts = path.split("/")  # "", "projects", p, "models", m[, "versions", v]
    if len(parts) == 5 and parts[3] == "models" and parts[2] and parts[4]:
        return protocol, parts[2], parts[4], None
    if (
        len(parts) == 7
        and parts[3] == "models"
        and parts[5] == "versions"
        and parts[2]
        and parts[4]
        and parts[6]
    ):
        return protocol, parts[2], parts[4], parts[6]
    return None


class GatewayService:
    """A worker's gateway state and lifecycle; see the module docstring for the request steps."""

    def __init__(
        self,
        settings: GatewaySettings,
        source: TableSource,
        sink: LogSink | None = None,
        *,
        owns_source: bool = False,
    ) -> None:
        self.settings = settings
        self.source = source
        self.owns_source = owns_source  # close it on stop (it was opened for this service)
        self.metrics = GatewayMetrics(shared_dir=settings.metrics_dir)
        # The worker's writes, to clients and replicas alike; held while several requests are in
        # flight (set in dispatch/finish); while they are not, each write kicks the idle poller.
        self.idle_poller = IdlePoller(settings.idle_poll_us / 1e6)
        self.batcher = WriteBatcher(hold=False, poller=self.idle_poller)
        self.upstream = Upstream(connect_timeout_s=settings.connect_timeout_s, batcher=self.batcher)
        sink = sink if sink is not None else open_sink(settings.resolved_log_sink())
        self._sink_name = sink.name
        self.shipper = LogShipper(sink, capacity=settings.log_buffer, count=self._count_log)
        self.gateway = Gateway(settings, self.metrics, self.upstream, self.shipper)
        self._ids = _RequestIds()
        self._targets: dict[str, tuple[str, str, str, str | None]] = {}
        self.in_flight = 0
        self._polls_counted = 0  # idle-poll rounds already added to the metric
        self.connections = 0  # maintained by the front end when it can see connections
        self.table_error: str | None = None  # why the last read of the routing table failed
        self._poller: asyncio.Task[None] | None = None

    def _count_log(self, outcome: str, n: int) -> None:
        self.metrics.log_records.labels(self._sink_name, outcome).inc(n)

    def admit(self, method: str, path: str, headers: Headers) -> GatewayRequest | GatewayResponse | None:
        """Check a request's head: the request (its body still to read), a refusal, or None when
        ``path`` is not a model path (see :meth:`other`). ``headers`` may be reused."""
        target = self._targets.get(path)
        if target is None:
            target = parse_path(path)
            if target is not None and len(self._targets) < 4096:  # callers' paths repeat: parse once
                self._targets[path] = target
        if target is None:
            return None
        try:
            wanted = "GET" if target[0] == "metadata" else "POST"
            if method != wanted:
                refused = error_response(
                    MethodNotAllowed(
                        f"method {method} is not allowed on {path} (use {wanted})", field="method"
                    )
                )
                refused.headers.append((b"allow", wanted.encode()))
                return self.refused(refused)
            if self.in_flight >= self.settings.max_in_flight:
                limit = self.settings.max_in_flight
                message = (
                    f"the gateway is at its limit of {limit} requests in flight per worker; retry shortly"
                )
                raise Overloaded("gateway", limit, message=message)
            forwarded, declared, request_id = _read_head(headers)
            if declared is not None and declared > self.settings.max_body_bytes:
                raise PayloadTooLarge(declared, self.settings.max_body_bytes)
        except ModelyardError as exc:
            return self.refused(error_response(exc))
        if request_id is None:
            request_id = self._ids()
            forwarded.append((b"x-request-id", request_id.encode()))
        protocol, project, model, version = target
        return GatewayRequest(
            protocol,
            project,
            model,
            version,
            method,
            forwarded,
            b"",
            request_id,
            time.time(),
            time.perf_counter(),
        )

    def refused(self, response: GatewayResponse) -> GatewayResponse:
        """Count an answer given before routing (405, 413, 503) and return it."""
        self.metrics.answered_unrouted(response.status, 0.0)
        return response

    def dispatch(self, request: GatewayRequest, on_answer: Callable[[GatewayResponse], None]) -> None:
        """Route and forward; ``on_answer`` gets the answer (a bug costs one request: a 500), and
        may be called twice only when it raised itself; then call :meth:`finish`."""
        self.in_flight += 1  # until finish(): the front end calls it once the answer is sent
        self.batcher.hold = self.in_flight > 1  # see gateway/batching.py
        try:
            self.gateway.dispatch(request, on_answer)
        except Exception:
            log.exception("unhandled error on %s/%s", request.project, request.model)
            on_answer(error_response(ModelyardError("internal gateway error")))

    def finish(self, request: GatewayRequest, response: GatewayResponse) -> None:
        """After a dispatched request's answer went out: see :meth:`Gateway.finish`."""
        self.in_flight -= 1
        self.batcher.hold = self.in_flight > 1
        self.gateway.finish(request, response)

    async def serve(self, request: GatewayRequest) -> GatewayResponse:
        """Route and forward; a bug costs one request (a 500), never the worker."""
        self.in_flight += 1
        try:
            return await self.gateway.handle(request)
        except Exception:
            log.exception("unhandled error on %s/%s", request.project, request.model)
            return error_response(ModelyardError("internal gateway error"))
        finally:
            self.in_flight -= 1

    def other(self, method: str, path: str) -> GatewayResponse:
        """The gateway's own endpoints: metrics, probes, the routing table in use."""
        if method not in ("GET", "HEAD"):
            if path not in _OWN:
                return _not_found(method, path)
            refused = error_response(
                MethodNotAllowed(f"method {method} is not allowed on {path}", field="method")
            )
            refused.headers.append((b"allow", b"GET, HEAD"))
            return refused
        if path == "/metrics":
            return GatewayResponse(200, [(b"content-type", CONTENT_TYPE.encode())], self.metrics.render())
        if path in _LIVE:
            return _json(200, {"live": True})
        if path in _READY:
            return self._readiness()
        if path == "/-/routing":
            table = self.gateway.router.table
            routes = [route_to_dict(route) for route in table.routes.values()]
            content: dict[str, object] = {"revision": table.revision, "routes": routes}
            if self.table_error is not None:
                content["error"] = self.table_error
            return _json(200, content)
        return _not_found(method, path)

    def _readiness(self) -> GatewayResponse:
        """Ready once a routing table was read; a source that fails later keeps the last table."""
        if self.gateway.loaded:
            return _json(200, {"ready": True})
        reason = self.table_error or "the first read has not finished"
        message = f"the routing table has not been loaded yet: {reason}"
        return _json(503, {"ready": False, "error": message, "kind": ErrorKind.NOT_READY.value})

    async def start(self) -> None:
        """Open the log sink, read the routing table, start polling it."""
        await self.shipper.start()
        await self._refresh_or_record()  # failing, the worker serves anyway: not ready, and says why
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.gateway.mirror.stop()
        await self.shipper.stop()
        self._count_idle_polls()
        self.metrics.publish()  # the last counts of a worker that stops stay in the sum
        self.upstream.close()
        close = getattr(self.source, "close", None)
        if self.owns_source and callable(close):
            close()

    def _count_idle_polls(self) -> None:
        rounds = self.idle_poller.rounds
        self.metrics.idle_polls.inc(rounds - self._polls_counted)
        self._polls_counted = rounds

    async def refresh(self) -> bool:
        """Reload the routing table if its revision moved; True when a new table is in use."""
        revision = await asyncio.to_thread(self._expire_and_read_revision)  # one thread hop, not two
        if self.gateway.loaded and revision == self.gateway.router.revision:
            return False
        table = await asyncio.to_thread(self.source.load)
        return self.gateway.update(table)

    def _expire_and_read_revision(self) -> int:
        expire = getattr(self.source, "expire", None)
        if callable(expire):  # drop announced replicas whose heartbeats stopped (endpoints.py)
            expire()
        return self.source.revision()

    async def _refresh_or_record(self) -> None:
        """:meth:`refresh`; a failure keeps the last table and is counted, kept in
        :attr:`table_error` (shown by ``/-/routing`` and the readiness probe) and logged once."""
        try:
            await self.refresh()
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelyardError) else str(exc) or type(exc).__name__
            if message != self.table_error:  # once per outage, and again when the reason changes
                log.warning("cannot read the routing table (keeping the last one): %s", message)
            self.table_error = message
            self.metrics.routing_errors.inc()
            return
        if self.table_error is not None:
            log.info("the routing table reads again")
            self.table_error = None

    async def _poll(self) -> None:
        published = 0.0
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            # Sampled here rather than moved per request: a gauge update takes a lock (or an mmap
            # write with several workers), which is too dear for the hot path.
            self.metrics.in_flight.set(self.in_flight)
            self.metrics.connections.set(self.connections)
            self._count_idle_polls()
            if time.monotonic() - published >= PUBLISH_INTERVAL_S:
                published = time.monotonic()
                self.metrics.publish()
            await self._refresh_or_record()


# The probes answer on the model server's paths too: /v2/health/* is what Open Inference Protocol
# clients (modelyard.Client(url).ready()) ask, /health/* what the Kubernetes probes use.
_LIVE = ("/health/live", "/v2/health/live")
_READY = ("/health/ready", "/v2/health/ready")
_OWN = ("/metrics", *_LIVE, *_READY, "/-/routing")


def _read_head(headers: Headers) -> tuple[Headers, int | None, str | None]:
    """One pass over a request's headers: those to forward (hop-by-hop ones and an unusable
    x-request-id left out), the declared body size, the caller's request id."""
    forwarded: Headers = []
    declared = request_id = None
    for header in headers:
        name = header[0]
        if name in HOP_BY_HOP:
            if name == b"content-length":
                if not header[1].isdigit():
                    raise InvalidInput(
                        "Content-Length must be a non-negative integer", field="content-length"
                    )
                declared = int(header[1])
            continue
        if name == b"x-request-id":
            if request_id is not None or not 0 < len(header[1]) <= 200:
                continue  # a second one, or one that cannot be used: ours replaces it
            request_id = header[1].decode("latin-1")
        forwarded.append(header)
    return forwarded, declared, request_id


def response_headers(response: GatewayResponse, request_id: str) -> Headers:
    """The headers to send: the replica's (less hop-by-hop ones), the request id, the route version's
    (made when the routing table loaded: ``messages.VersionHeaders``)."""
    headers = [(name, value) for name, value in response.headers if name not in HOP_BY_HOP]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    if response.version_headers is not None:
        headers.extend(response.version_headers.pairs)
    return headers


class _RequestIds:
    """Unique request ids, 32 hex digits like a UUID: a random per-process prefix and a counter.

    A tenth of the cost of ``uuid4()``, which was a visible share of the gateway's per-request work.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


def _json(status: int, content: object) -> GatewayResponse:
    return GatewayResponse(status, [(b"content-type", b"application/json")], orjson.dumps(content))


def _not_found(method: str, path: str) -> GatewayResponse:
    return error_response(RouteNotFound(f"no route for {method} {path}", field="path"))
