"""One gateway worker, independent of the HTTP front end that feeds it.

:class:`GatewayService` puts a worker together and is what both front ends drive: the ASGI app
(``gateway/app.py``, for tests and any ASGI server) and the raw HTTP/1.1 server
(``gateway/http1.py``, what ``modelyard gateway serve`` runs). Both take the same first step,
:meth:`~GatewayService.admit` once the head is read; then each drives the request its own way:

- the HTTP/1.1 server, callbacks: :meth:`~GatewayService.dispatch` once the body is read, and
  :meth:`~GatewayService.finish` after the answer went out (which ends its in-flight count);
- the ASGI app, a coroutine: :meth:`~GatewayService.serve`, then :meth:`Gateway.finish` after the
  answer went out.

The parts, each in its own module: the head checks (``admission.py``), the transport-free request
path (``proxy.py``: :class:`Gateway`), the routing-table poller (``tablepoll.py``), the periodic
metrics work (``metrics_publish.py``), the worker's own endpoints (``own_endpoints.py``), the write
batcher and idle poller shared by every connection (``writes.py``, ``idlepoll.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from modelyard.errors import ModelyardError
from modelyard.gateway.admission import Admission
from modelyard.gateway.idlepoll import IdlePoller
from modelyard.gateway.keys import KeyCheck
from modelyard.gateway.logs import LogShipper, LogSink, open_sink
from modelyard.gateway.messages import GatewayRequest, GatewayResponse, error_response
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.metrics_publish import MetricsPublisher
from modelyard.gateway.own_endpoints import OwnEndpoints
from modelyard.gateway.proxy import Gateway
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.tablepoll import TablePoller, TableSource
from modelyard.gateway.upstream import Upstream
from modelyard.gateway.writes import WriteBatcher

__all__ = ["GatewayService"]

log = logging.getLogger("modelyard.gateway")
Headers = list[tuple[bytes, bytes]]


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
        self.admission = Admission(settings, self.metrics)
        self.keys = KeyCheck(settings.resolved_workers())  # per-project API keys (keys.py)
        self.tables = TablePoller(source, self.gateway, self.metrics, owns_source=owns_source)
        self.publisher = MetricsPublisher(self.metrics, self.idle_poller)
        self.own = OwnEndpoints(self.metrics, self.gateway, self.tables)
        self.in_flight = 0
        self.connections = 0  # maintained by the front end when it can see connections
        self._poller: asyncio.Task[None] | None = None

    def _count_log(self, outcome: str, n: int) -> None:
        self.metrics.log_records.labels(self._sink_name, outcome).inc(n)

    def admit(self, method: str, path: str, headers: Headers) -> GatewayRequest | GatewayResponse | None:
        """Check a request's head: the request (its body still to read), a refusal, or None when
        ``path`` is not a model path (see :meth:`other`). ``headers`` may be reused. A project
        with API keys takes only a request with one of its keys, within its rate (keys.py)."""
        admitted = self.admission.admit(method, path, headers, self.in_flight)
        if isinstance(admitted, GatewayRequest):
            refused = self.keys.check(admitted, self.gateway.router.table)
            if refused is not None:
                return self.refused(error_response(refused))
        return admitted

    def refused(self, response: GatewayResponse) -> GatewayResponse:
        """Count an answer given before routing (405, 413, 503) and return it."""
        return self.admission.refused(response)

    def dispatch(self, request: GatewayRequest, on_answer: Callable[[GatewayResponse], None]) -> None:
        """Route and forward; ``on_answer`` gets the answer (a bug costs one request: a 500), and
        may be called twice only when it raised itself; then call :meth:`finish`."""
        self.in_flight += 1  # until finish(): the front end calls it once the answer is sent
        self.batcher.hold = self.in_flight > 1  # see gateway/writes.py
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

    def other(self, method: str, path: str, admin: bool = False) -> GatewayResponse:
        """The gateway's own endpoints: probes; and with ``admin`` (the request came on the admin
        listener) metrics and the routing table in use."""
        return self.own.answer(method, path, admin)

    async def start(self) -> None:
        """Open the log sink, read the routing table, start polling it."""
        await self.shipper.start()
        await self.tables.poll()  # failing, the worker serves anyway: not ready, and says why
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.gateway.mirror.stop()
        await self.shipper.stop()
        self.publisher.publish_last()
        self.upstream.close()
        self.tables.close()

    async def _poll(self) -> None:
        """Every refresh interval: the metrics kept off the request path, then the routing table."""
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            self.publisher.sample(self.in_flight, self.connections, self.gateway.router.replica_loads())
            await self.tables.poll()
