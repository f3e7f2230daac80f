"""The gateway's HTTP/1.1 client to replicas: keep-alive connection pools on raw asyncio protocols.

Measured before choosing (docs/architecture.md): a request through httpx's AsyncClient costs several
times the event-loop time of this client, whose only work per request is one ``write`` of prebuilt
bytes and httptools' C parser on the answer. It speaks just what the gateway needs: one request at
a time per connection, bodies of known length, responses with Content-Length or chunked.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Iterable
from typing import Any

import httptools

__all__ = ["Upstream", "UpstreamError", "UpstreamFailure", "UpstreamResponse"]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
     b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host", b"content-length"}
)  # fmt: skip


class UpstreamFailure(enum.Enum):
    CONNECT = "connect"  # nothing was sent: always safe to try another replica
    RESET = "reset"  # the connection dropped before any byte of an answer
    TIMEOUT = "timeout"  # no complete answer in time
    PROTOCOL = "protocol"  # the replica spoke something that is not HTTP/1.1


class UpstreamError(Exception):
    """A replica could not be reached or gave no usable answer."""

    def __init__(self, failure: UpstreamFailure, url: str, detail: str) -> None:
        super().__init__(f"replica {url}: {failure.value}: {detail}")
        self.detail = detail
        self.failure = failure
        self.url = url


class UpstreamResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``exchange`` sends a request and waits for the whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = False  # any byte of the current answer
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed alike.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(UpstreamFailure.PROTOCOL, f"malformed response: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        failure = UpstreamFailure.PROTOCOL if self.received else UpstreamFailure.RESET
        self.fail(failure, "connection closed before a complete response")

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, body)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # ours
    def exchange(self, data: bytes) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self.headers, self.body, self.received = [], [], False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def fail(self, failure: UpstreamFailure, detail: str) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamError(failure, "", detail))

    @property
    def reusable(self) -> bool:
        return not self.closed and self.keep_alive and self.waiter is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _HostPool:
    """Idle keep-alive connections to one replica (most recently used first: warm sockets)."""

    def __init__(self, url: str, max_idle: int) -> None:
        host, _, port = url.removeprefix("http://").rpartition(":")
        self.url = url
        self.host = host.strip("[]")
        self.port = int(port)
        self.authority = url.removeprefix("http://").encode()
        self.idle: collections.deque[_Connection] = collections.deque()
        self.max_idle = max_idle

    def take_idle(self) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable:
                return connection
        return None

    async def connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, protocol = await loop.create_connection(_Connection, self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(UpstreamFailure.CONNECT, self.url, str(exc) or type(exc).__name__) from None
        return protocol

    def release(self, connection: _Connection) -> None:
        if connection.reusable and len(self.idle) < self.max_idle:
            self.idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Upstream:
    """Connection pools to every replica this worker talks to, created on first use."""

    def __init__(self, *, max_idle_per_replica: int = 256, connect_timeout_s: float = 2.0) -> None:
        self._pools: dict[str, _HostPool] = {}
        self._max_idle = max_idle_per_replica
        self._connect_timeout_s = connect_timeout_s

    def _pool(self, url: str) -> _HostPool:
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = _HostPool(url, self._max_idle)
        return pool

    async def request(
        self,
        url: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> UpstreamResponse:
        """Send one request to the replica at ``url`` and return its whole answer.

        A kept-alive connection that the replica closed while idle fails with RESET before any
        answer; that is retried once on a fresh connection here, since nothing reached the model.
        """
        pool = self._pool(url)
        data = _encode(method, path, pool.authority, headers, body)
        connection = pool.take_idle()
        if connection is not None:
            try:
                return await self._exchange(pool, connection, data, timeout_s)
            except UpstreamError as exc:
                if exc.failure is not UpstreamFailure.RESET:
                    raise
        connection = await pool.connect(self._connect_timeout_s)
        return await self._exchange(pool, connection, data, timeout_s)

    async def _exchange(
        self, pool: _HostPool, connection: _Connection, data: bytes, timeout_s: float
    ) -> UpstreamResponse:
        waiter = connection.exchange(data)
        # A timer that fails the waiter costs a fraction of asyncio.timeout()'s context manager.
        timer = asyncio.get_running_loop().call_later(
            timeout_s, connection.fail, UpstreamFailure.TIMEOUT, f"no answer within {timeout_s:g} s"
        )
        try:
            response = await waiter
        except UpstreamError as exc:
            connection.close()
            raise UpstreamError(exc.failure, pool.url, exc.detail) from None
        except BaseException:
            connection.close()  # cancelled mid-exchange: the connection's state is unknown
            raise
        finally:
            timer.cancel()
        pool.release(connection)
        return response

    def forget(self, keep: Iterable[str]) -> None:
        """Close the pools of replicas no longer in the routing table."""
        wanted = set(keep)
        for url in [url for url in self._pools if url not in wanted]:
            self._pools.pop(url).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _encode(
    method: str, path: str, authority: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> bytes:
    parts: list[Any] = [method.encode(), b" ", path.encode(), b" HTTP/1.1\r\nhost: ", authority]
    parts.append(b"\r\ncontent-length: %d\r\n" % len(body))
    for name, value in headers:
        if name not in HOP_BY_HOP:
            parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)
