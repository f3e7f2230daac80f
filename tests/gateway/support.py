"""Real HTTP servers for gateway tests, each on its own event-loop thread and port 0.

``StubReplica`` is a trivial but real HTTP/1.1 backend standing in for a model server (the
end-to-end tests use real ``modelyard serve`` replicas): it answers every request with JSON naming
itself, the path and a hash of the body, and can be told to be slow, to answer 503, or to die.
``GatewayThread`` runs the production front end (``Http1Server`` + ``GatewayService``), with its
admin listener (``admin_url``: ``/metrics``, ``/-/routing``) beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httptools
import httpx
import orjson
import xxhash

from modelyard.control.settings import ControlSettings
from modelyard.gateway.app import build_service
from modelyard.gateway.http1 import Http1Server
from modelyard.gateway.logs import LogSink
from modelyard.gateway.service import GatewayService
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.tablepoll import TableSource
from modelyard.routing.store import RouteStore
from modelyard.web.listen import bind_socket


class _LoopThread:
    """An event loop on a daemon thread; ``call`` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class _ReplicaProtocol(asyncio.Protocol):
    def __init__(self, replica: StubReplica) -> None:
        self.replica = replica
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_list: list[tuple[str, str]] = []  # as sent: repeats and order kept
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.replica.transports.add(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.replica.transports.discard(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()
        self.header_list.append((name.decode().lower(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = (self.url.decode(), self.headers, b"".join(self.body))
        self.replica.header_lists.append(self.header_list)
        self.url, self.headers, self.body, self.header_list = b"", {}, [], []
        asyncio.get_running_loop().create_task(self.replica.answer(self, *request))


class StubReplica:
    """A real HTTP server answering like a replica; see the module docstring."""

    def __init__(self, name: str, loop: _LoopThread) -> None:
        self.name = name
        self._loop = loop
        self.status = 200
        self.delay_s = 0.0
        self.interim = False  # send "100 Continue" before each answer, as some servers do
        self.extra_headers = b""  # whole header lines added to each answer
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.header_lists: list[list[tuple[str, str]]] = []  # each request's headers, as sent
        self.transports: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = bind_socket("127.0.0.1", self.port)
        self.port = sock.getsockname()[1]

        async def serve() -> asyncio.Server:
            return await asyncio.get_running_loop().create_server(lambda: _ReplicaProtocol(self), sock=sock)

        self._server = self._loop.call(serve())

    def kill(self) -> None:
        """Die abruptly: stop listening and reset every open connection."""

        async def die() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self.transports):
                transport.abort()

        self._loop.call(die())

    async def answer(
        self, protocol: _ReplicaProtocol, path: str, headers: dict[str, str], body: bytes
    ) -> None:
        self.requests.append((path, headers, body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        content = {
            "replica": self.name, "path": path, "body_hash": xxhash.xxh3_64_hexdigest(body),
            "request_id": headers.get("x-request-id"), "mirror": headers.get("x-modelyard-mirror"),
        }  # fmt: skip
        payload = orjson.dumps(content)
        reason = b"OK" if self.status == 200 else b"Service Unavailable"
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n" % (
            self.status, reason, self.extra_headers, len(payload),
        )  # fmt: skip
        if protocol.transport is not None and not protocol.transport.is_closing():
            interim = b"HTTP/1.1 100 Continue\r\n\r\n" if self.interim else b""
            protocol.transport.write(interim + head + payload)


class GatewayThread:
    """The gateway's production front end on its own loop thread, port 0; its admin listener on
    another (``admin_url``); both over TLS with ``tls``."""

    def __init__(
        self,
        service: GatewayService,
        loop: _LoopThread,
        tls: ssl.SSLContext | None = None,
        keepalive_timeout_s: float = 75.0,
    ) -> None:
        self.service = service
        self._loop = loop
        self.server = Http1Server(service, tls=tls, keepalive_timeout_s=keepalive_timeout_s)
        self.admin = Http1Server(service, admin=True, tls=tls)
        scheme = "http" if tls is None else "https"
        sock, admin_sock = bind_socket("127.0.0.1", 0), bind_socket("127.0.0.1", 0)
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        self.admin_url = f"{scheme}://127.0.0.1:{admin_sock.getsockname()[1]}"

        async def start() -> None:
            await service.start()
            await self.server.start(sock)
            await self.admin.start(admin_sock)

        loop.call(start())

    def refresh(self) -> None:
        """Reload the routing table now (tests need not wait for the poller)."""
        self._loop.call(self.service.tables.refresh())

    def stop(self) -> None:
        async def stop() -> None:
            await asyncio.gather(self.server.drain(5.0), self.admin.drain(5.0))
            await self.service.stop()

        self._loop.call(stop())


class GatewayWorld:
    """A routing store (SQLite under tmp), stub replicas and a gateway, torn down together."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = _LoopThread()
        self.control = ControlSettings(home=tmp_path / "home")
        self.store = RouteStore.open(self.control)
        self.replicas: list[StubReplica] = []
        self.gateways: list[GatewayThread] = []
        self.log_path = tmp_path / "logs" / "inference.jsonl"

    def replica(self, name: str) -> StubReplica:
        replica = StubReplica(name, self.loop)
        self.replicas.append(replica)
        return replica

    def gateway(
        self,
        source: TableSource | None = None,
        sink: LogSink | None = None,
        tls: ssl.SSLContext | None = None,
        keepalive_timeout_s: float = 75.0,
        **overrides: Any,
    ) -> GatewayThread:
        data: dict[str, Any] = {
            "control": self.control,
            "refresh_interval_s": 0.05,
            "log_sink": str(self.log_path),
        }
        data.update(overrides)
        if source is None and "routes_file" not in overrides:  # with a routes file: as the CLI builds it
            source = self.store
        service = build_service(GatewaySettings(**data), source, sink)
        gateway = GatewayThread(service, self.loop, tls, keepalive_timeout_s)
        self.gateways.append(gateway)
        return gateway

    @classmethod
    @contextlib.contextmanager
    def context(cls, tmp_path: Path) -> Iterator[GatewayWorld]:
        created = cls(tmp_path)
        try:
            yield created
        finally:
            created.close()

    def close(self) -> None:
        for gateway in self.gateways:
            with contextlib.suppress(Exception):
                gateway.stop()
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                replica.kill()
        self.loop.close()
        self.store.close()


def world(tmp_path: Path) -> contextlib.AbstractContextManager[GatewayWorld]:
    return GatewayWorld.context(tmp_path)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def predict(
    client: httpx.Client,
    url: str,
    body: bytes = b'{"instances": [[1.0]]}',
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.post(url, content=body, headers={"content-type": "application/json", **(headers or {})})


class RecordingTransport:
    """A transport that records its writes and closes, in order, into a log shared by every
    transport of a test (for the write batcher and the idle poller)."""

    def __init__(self, name: str, log: list[tuple[str, str]], *, broken: bool = False) -> None:
        self.name, self.log, self.broken, self.closing = name, log, broken, False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.log.append((self.name, data.decode()))

    def close(self) -> None:
        self.closing = True
        self.log.append((self.name, "<close>"))

    def is_closing(self) -> bool:
        return self.closing


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Raw:
    """One client connection on a plain socket; answers are parsed from the bytes as they come."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError(f"the server closed the connection; unparsed bytes: {self.buffer!r}")
        self.buffer += data

    def answer(self, *, head: bool = False) -> Answer:
        """The next answer (an interim 1xx included); ``head``: it answers a HEAD (no body follows)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        raw_head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        headers: dict[str, str] = {}
        for line in lines:
            name, value = line.split(":", 1)
            assert name.lower() not in headers, f"header {name} sent twice"
            headers[name.lower()] = value.strip()
        length = 0 if head or int(status) < 200 else int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status), headers, body)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` and sent nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return not self.buffer
        finally:
            self.sock.settimeout(10)
        self.buffer += data
        return not self.buffer

    def has_unread_bytes(self) -> bool:
        """Whether any byte arrived that no answer took (looked at now, without waiting)."""
        if self.buffer:
            return True
        self.sock.setblocking(False)
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(10)

    def close(self) -> None:
        self.sock.close()


def request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, version: str = "1.1"
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "host: gateway"]
    given = {name.lower(): value for name, value in (headers or {}).items()}
    if (body or method == "POST") and "transfer-encoding" not in given:
        given.setdefault("content-length", str(len(body)))
    lines += [f"{name}: {value}" for name, value in given.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
