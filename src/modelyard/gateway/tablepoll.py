"""Keeping a worker on the newest routing table: poll the table's source, reload when it moved.

Each poll asks the :class:`TableSource` for its revision (one thread hop: the source may be a
database) and loads the table only when that moved. A poll that fails keeps the table in use: the
failure is counted, logged once per outage and kept as :attr:`TablePoller.error`, which the
readiness probe and ``/-/routing`` show (``own_endpoints.py``). The worker's service
(``service.py``) runs the polls on its timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from modelyard.errors import ModelyardError
from modelyard.gateway.metrics import GatewayMetrics
from modelyard.gateway.proxy import Gateway
from modelyard.routing.table import RoutingTable

__all__ = ["TablePoller", "TableSource"]

log = logging.getLogger("modelyard.gateway")


class TableSource(Protocol):
    """Where the routing table comes from: the control-plane database (``RouteStore``) or a routes
    file (``RouteFile``, ``--routes``). :meth:`revision` is polled and :meth:`load` called when it
    moved; either raises when the table cannot be read, and the worker keeps the table it has."""

    def revision(self) -> int: ...

    def load(self) -> RoutingTable: ...


class TablePoller:
    """Reloads ``gateway``'s routing table from ``source``; see the module docstring."""

    def __init__(
        self, source: TableSource, gateway: Gateway, metrics: GatewayMetrics, *, owns_source: bool = False
    ) -> None:
        self.source = source
        self.gateway = gateway
        self.metrics = metrics
        self.owns_source = owns_source  # close it in close() (it was opened for this worker)
        self.error: str | None = None  # why the last read of the routing table failed

    async def refresh(self) -> bool:
        """Reload the routing table if its revision moved; True when a new table is in use."""
        revision = await asyncio.to_thread(self._expire_and_read_revision)  # one thread hop, not two
        if self.gateway.loaded and revision == self.gateway.router.revision:
            return False
        table = await asyncio.to_thread(self.source.load)
        return self.gateway.update(table)

    def _expire_and_read_revision(self) -> int:
        expire = getattr(self.source, "expire", None)
        if callable(expire):  # drop announced replicas whose heartbeats stopped (routing/discovery.py)
            expire()
        return self.source.revision()

    async def poll(self) -> None:
        """:meth:`refresh`; a failure keeps the last table and is counted, kept in :attr:`error`
        and logged once."""
        try:
            await self.refresh()
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelyardError) else str(exc) or type(exc).__name__
            if message != self.error:  # once per outage, and again when the reason changes
                log.warning("cannot read the routing table (keeping the last one): %s", message)
            self.error = message
            self.metrics.routing_errors.inc()
            return
        if self.error is not None:
            log.info("the routing table reads again")
            self.error = None

    def not_ready(self) -> str | None:
        """Why the worker cannot route yet (no table read so far), or None once it can: a source
        that fails later keeps the last table, so the worker stays ready."""
        if self.gateway.loaded:
            return None
        return self.error or "the first read has not finished"

    def close(self) -> None:
        """Close the source when it was opened for this worker."""
        close = getattr(self.source, "close", None)
        if self.owns_source and callable(close):
            close()
