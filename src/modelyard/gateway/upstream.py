"""The gateway's HTTP/1.1 client to replicas: keep-alive pools on raw asyncio protocols, callbacks.

Measured before choosing (docs/architecture.md, docs/performance.md): the hop's whole budget is a
few tens of microseconds, so a request here is one ``write`` of prebuilt bytes and httptools' C
parser on the answer, and completion is a plain callback — no task, no future, no timeout context
manager per request (each of those cost more than the parsing). It speaks just what the gateway
needs: one request at a time per connection, bodies of known length, answers with Content-Length
or chunked.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

import httptools

from modelyard.gateway.idlepoll import REPLY
from modelyard.gateway.writes import WriteBatcher

__all__ = [
    "HOP_BY_HOP",
    "Done",
    "Upstream",
    "UpstreamError",
    "UpstreamFailure",
    "UpstreamResponse",
    "connection_named",
    "without_named",
]

log = logging.getLogger("modelyard.gateway")

# Never passed on, in either direction: the hop-by-hop headers of RFC 9110 section 7.6.1 (and of
# RFC 2616 before it), plus those the gateway frames itself (host, content-length, expect). The
# headers a message's own Connection header names are dropped as well: connection_named().
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
     b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host", b"content-length",
     b"expect"}
)  # fmt: skip
_NOTHING_NAMED = frozenset({b"", b"close", b"keep-alive"})


def connection_named(value: bytes) -> frozenset[bytes]:
    """The header names a ``Connection`` header's ``value`` lists, lower-cased, less those that are
    dropped anyway (hop-by-hop ones) or name no header (``close``): usually nothing."""
    if value.lower() in _NOTHING_NAMED:
        return frozenset()
    names = (token.strip().lower() for token in value.split(b","))
    return frozenset(name for name in names if name and name != b"close" and name not in HOP_BY_HOP)


def without_named(headers: list[tuple[bytes, bytes]], named: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` less those whose (lower-case) name is in ``named``."""
    return [header for header in headers if header[0] not in named]


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


# Called exactly once per request: with the answer, or with the error.
Done = Callable[[UpstreamResponse | None, UpstreamError | None], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a replica; at most one request on it at a time."""

    def __init__(self, pool: _HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: Done | None = None
        self.resend: tuple[bytes, float] | None = None  # set while a reused connection may be stale
        self.deadline = 0.0  # loop time by which the answer must be complete (see _Timeouts)
        self.timeout_s = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.connection = b""  # the answer's Connection header: the headers it names are dropped
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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        failure = UpstreamFailure.PROTOCOL if self.received else UpstreamFailure.RESET
        self.fail(failure, "connection closed before a complete response")

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"connection":
            self.connection = value if not self.connection else self.connection + b"," + value
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): not ours
            self.headers, self.body, self.connection = [], [], b""
            return
        done, self.done = self.done, None
        self.pool.timeouts.waiting.discard(self)
        self.keep_alive = self.parser.should_keep_alive()
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        headers = self.headers
        if self.connection:  # what the front ends leave out is HOP_BY_HOP; the named ones go here
            named = connection_named(self.connection)
            self.connection = b""
            if named:
                headers = without_named(headers, named)
        response = UpstreamResponse(status, headers, body)
        self.pool.release(self)
        if done is not None:
            _call(done, response, None)

    # ours
    def send(self, data: bytes, timeout_s: float, done: Done, *, reused: bool = False) -> None:
        """Send one request; ``reused``: a kept-alive connection, which the replica may have closed
        while it sat idle — a reset before any answer is then retried once on a fresh connection,
        since nothing reached the model."""
        assert self.transport is not None
        self.headers, self.body, self.received = [], [], False
        self.done = done
        self.resend = (data, timeout_s) if reused else None
        pool = self.pool
        self.timeout_s = timeout_s
        self.deadline = pool.loop.time() + timeout_s
        pool.timeouts.add(self)
        pool.batcher.write(self.transport, data, REPLY)

    def timed_out(self) -> None:
        self.fail(UpstreamFailure.TIMEOUT, f"no answer within {self.timeout_s:g} s")

    def fail(self, failure: UpstreamFailure, detail: str) -> None:
        """End the current request with an error; the connection is not reused after that."""
        done, self.done = self.done, None
        self.pool.timeouts.waiting.discard(self)
        self.close()
        if done is None:
            return
        if failure is UpstreamFailure.RESET and self.resend is not None:
            data, timeout_s = self.resend
            self.pool.connect(data, timeout_s, done)
            return
        _call(done, None, UpstreamError(failure, self.pool.url, detail))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _call(done: Done, response: UpstreamResponse | None, error: UpstreamError | None) -> None:
    try:
        done(response, error)
    except Exception:  # a bug in a completion must not break the connection that delivered it
        log.exception("upstream completion failed")


class _Timeouts:
    """The deadlines of the requests waiting on replicas, checked together every ``tick_s``.

    A timer per request (``call_later`` and its ``cancel``) was ≈0.8 µs of a hop's ≈20 µs of
    Python; this is a set insertion and removal. The price: a request that times out is failed up
    to ``tick_s`` late. The check runs only while some request is waiting.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = 0.01) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self.waiting: set[_Connection] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, connection: _Connection) -> None:
        self.waiting.add(connection)
        if self._handle is None:
            self._handle = self.loop.call_later(self.tick_s, self._check)

    def _check(self) -> None:
        self._handle = None
        now = self.loop.time()
        for connection in [c for c in self.waiting if c.deadline <= now]:
            connection.timed_out()  # fails it, which takes it out of `waiting`
        if self.waiting:
            self._handle = self.loop.call_later(self.tick_s, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _HostPool:
    """Idle keep-alive connections to one replica (most recently used first: warm sockets)."""

    def __init__(
        self, url: str, max_idle: int, connect_timeout_s: float, batcher: WriteBatcher, timeouts: _Timeouts
    ) -> None:
        host, _, port = url.removeprefix("http://").rpartition(":")
        self.url = url
        self.host = host.strip("[]")
        self.port = int(port)
        self.authority = url.removeprefix("http://").encode()
        self.starts: dict[tuple[str, str], bytes] = {}
        self.idle: collections.deque[_Connection] = collections.deque()
        self.max_idle = max_idle
        self.connect_timeout_s = connect_timeout_s
        self.loop = asyncio.get_running_loop()
        self.batcher = batcher
        self.timeouts = timeouts
        self.closed = False
        self.connecting: set[asyncio.Task[None]] = set()

    def take_idle(self) -> _Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and connection.keep_alive and connection.done is None:  # still reusable
                return connection
        return None

    def release(self, connection: _Connection) -> None:
        reusable = not connection.closed and connection.keep_alive and connection.done is None
        if reusable and len(self.idle) < self.max_idle and not self.closed:
            self.idle.append(connection)
        else:
            connection.close()

    def connect(self, data: bytes, timeout_s: float, done: Done) -> None:
        """Send on a new connection. The slow path, the only one with a task: pools keep it rare."""
        task = self.loop.create_task(self.connect_and_send(data, timeout_s, done))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def connect_and_send(self, data: bytes, timeout_s: float, done: Done) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await self.loop.create_connection(
                    lambda: _Connection(self), self.host, self.port
                )
        except (OSError, TimeoutError) as exc:
            _call(
                done, None, UpstreamError(UpstreamFailure.CONNECT, self.url, str(exc) or type(exc).__name__)
            )
            return
        connection.send(data, timeout_s, done)

    def close(self) -> None:
        self.closed = True
        while self.idle:
            self.idle.pop().close()
        for task in self.connecting:
            task.cancel()


class Upstream:
    """Connection pools to every replica this worker talks to, created on first use."""

    def __init__(
        self,
        *,
        max_idle_per_replica: int = 256,
        connect_timeout_s: float = 2.0,
        batcher: WriteBatcher | None = None,
    ) -> None:
        self._pools: dict[str, _HostPool] = {}
        self._batcher = batcher if batcher is not None else WriteBatcher()
        self._timeouts: _Timeouts | None = None  # made on first use, with the running loop
        self._max_idle = max_idle_per_replica
        self._connect_timeout_s = connect_timeout_s

    def _pool(self, url: str) -> _HostPool:
        pool = self._pools.get(url)
        if pool is None:
            if self._timeouts is None:
                self._timeouts = _Timeouts(asyncio.get_running_loop())
            pool = _HostPool(url, self._max_idle, self._connect_timeout_s, self._batcher, self._timeouts)
            self._pools[url] = pool
        return pool

    def send(
        self,
        url: str,
        method: str,
        path: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
        done: Done,
    ) -> None:
        """Send one request to the replica at ``url``; ``done`` gets its whole answer or the error.

        A kept-alive connection that the replica closed while idle fails with RESET before any
        answer: that is retried once on a fresh connection (``_Connection.send``'s ``reused``).
        """
        pool = self._pool(url)
        data = _encode(pool, method, path, headers, body)
        connection = pool.take_idle()
        if connection is None:
            pool.connect(data, timeout_s, done)
        else:
            connection.send(data, timeout_s, done, reused=True)

    def forget(self, keep: Iterable[str]) -> None:
        """Close the pools of replicas no longer in the routing table."""
        wanted = set(keep)
        for url in [url for url in self._pools if url not in wanted]:
            self._pools.pop(url).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._timeouts is not None:
            self._timeouts.close()


def _encode(
    pool: _HostPool, method: str, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> bytes:
    start = pool.starts.get((method, path))
    if start is None:  # the request line and host of each (method, path), encoded once
        start = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), path.encode(), pool.authority)
        if len(pool.starts) < 1024:
            pool.starts[method, path] = start
    parts: list[Any] = [start, b"content-length: %d\r\n" % len(body)]
    for name, value in headers:
        if name not in HOP_BY_HOP:
            parts += (name, b": ", value, b"\r\n")
    parts += (b"\r\n", body)
    return b"".join(parts)
