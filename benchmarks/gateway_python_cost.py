#!/usr/bin/env python3
"""The Python cost of one request through a gateway worker, without sockets or other processes.

A gateway worker's front end (``gateway/http1.py``) and its replica connections
(``gateway/upstream.py``) are driven with fake transports: each round feeds a ~10 KB TF-Serving
request into a client connection, takes the request the worker wrote to its replica, feeds the
replica's answer back, and collects the answer written to the client. Nothing else runs, so the
figure is what the worker's own code costs per request — routing, retries' bookkeeping, metrics,
the inference-log record and its shipping (the JSON-lines sink, to a temporary file), and the
mirrored copies — with no kernel time and no waiting.

The baseline, measured in the same run the same way: a bare pass-through with the same parser
(httptools) on both sides and nothing else. The ratio is the gateway's features' cost over that
floor; ``benchmarks/gateway_hop.py`` measures the whole hop against nginx.

usage: benchmarks/gateway_python_cost.py [--requests 50000] [--mirror-fraction 0.1] [--no-log] [--api-key]

``--api-key``: the project has an API key (with a rate limit far above what is sent) and every
request carries it, so the key check (one SHA-256, a lookup, a token bucket) is counted too.
The figures vary by about ±1 µs between runs; docs/performance.md has the ones recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools
import uvloop

from modelyard.gateway import http1, upstream
from modelyard.gateway.logs import DiscardSink
from modelyard.gateway.service import GatewayService
from modelyard.gateway.settings import GatewaySettings
from modelyard.routing.keys import hash_key, new_key
from modelyard.routing.table import KeyGrant, ModelRoute, RoutingTable, VersionRoute

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_hop import make_body  # the same request body as the hop benchmark

REPLICA, MIRROR = "http://127.0.0.1:9", "http://127.0.0.1:10"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 24\r\nConnection: keep-alive\r\n\r\n"
    b'{"predictions":[[0.5]]}\n'
)


class FakeTransport:
    """Keeps what is written; everything else a protocol may call is a no-op."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None: ...

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class StaticTable:
    """A routing table with one model: ``v1`` takes all traffic, ``shadow`` gets mirrored copies."""

    def __init__(self, mirror_fraction: float, key: str | None = None) -> None:
        versions = [VersionRoute("v1", weight=100, replicas=(REPLICA,))]
        if mirror_fraction:
            versions.append(
                VersionRoute("shadow", mirror=True, mirror_fraction=mirror_fraction, replicas=(MIRROR,))
            )
        routes = {("bench", "const"): ModelRoute("bench", "const", tuple(versions))}
        keys = {hash_key(key): KeyGrant("bench", 1e6, 10_000_000)} if key else {}
        self.table = RoutingTable(1, routes, keys, frozenset(grant.project for grant in keys.values()))

    def revision(self) -> int:
        return 1

    def load(self) -> RoutingTable:
        return self.table


async def gateway_round(
    args: argparse.Namespace, request: bytes, log_dir: Path, key: str | None = None
) -> Callable[[], None]:
    """One worker's service with a client connection and idle replica connections; returns a
    function that sends one request through it."""
    # idle_poll_us=0: nothing sleeps here, and polling rounds would be counted as request time.
    settings = GatewaySettings(
        log_sink=str(log_dir / "inference.jsonl"), log_buffer=10**7, idle_poll_us=0, workers=1
    )
    service = GatewayService(
        settings, StaticTable(args.mirror_fraction, key), DiscardSink() if args.no_log else None
    )
    await service.start()
    if args.no_log:
        service.gateway.shipper = None
    client = http1._Connection(http1.Http1Server(service))
    client_out = FakeTransport()
    client.connection_made(client_out)  # type: ignore[arg-type]
    replicas = {}
    for url in (REPLICA, MIRROR):
        pool = service.upstream._pool(url)
        connection = upstream._Connection(pool)
        out = FakeTransport()
        connection.connection_made(out)  # type: ignore[arg-type]
        pool.idle.append(connection)
        replicas[url] = (connection, out)
    (primary, primary_out), (mirror, mirror_out) = replicas[REPLICA], replicas[MIRROR]

    def one() -> None:
        client.data_received(request)
        primary.data_received(ANSWER)
        if mirror_out.written:  # a mirrored copy went out: answer it too
            mirror_out.written.clear()
            mirror.data_received(ANSWER)
        client_out.written.clear()
        primary_out.written.clear()

    return one


class _BareSide:
    """One side of the floor: collects what httptools parses, writes a message when one is whole."""

    def __init__(self, parser: Any, target: FakeTransport, template: bytes) -> None:
        self.parser = parser
        self.target, self.template = target, template
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        self.headers, self.body, self.url = [], [], b""
        self.target.write(self.template % (len(body), body))


def bare_round(request: bytes) -> Callable[[], None]:
    """The floor: parse the request, write it to the replica, parse the answer, write it back."""
    to_replica, to_client = FakeTransport(), FakeTransport()
    client = _BareSide(
        None,
        to_replica,
        b"POST /v1/models/const:predict HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-length: %d\r\n\r\n%s",
    )
    client.parser = httptools.HttpRequestParser(client)
    replica = _BareSide(None, to_client, b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s")
    replica.parser = httptools.HttpResponseParser(replica)

    def one() -> None:
        client.parser.feed_data(request)
        replica.parser.feed_data(ANSWER)
        to_client.written.clear()
        to_replica.written.clear()

    return one


async def per_request_us(one: Callable[[], None], requests: int, rounds: int = 5) -> float:
    """Best of ``rounds``; the loop gets a turn every 256 requests, as a busy worker's would (the
    log shipper encodes and hands batches over in those turns, so their cost is counted)."""
    for _ in range(2000):
        one()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests // 256):
            for _ in range(256):
                one()
            await asyncio.sleep(0)
        best = min(best, (time.perf_counter() - started) / (requests // 256 * 256))
        await asyncio.sleep(0.02)
    return best * 1e6


async def main(args: argparse.Namespace) -> None:
    gc.collect()
    gc.freeze()  # as a gateway worker does once it is up (http1._settle_gc)
    gc.set_threshold(10_000, 20, 20)
    body = make_body(10)
    key = new_key()[1] if args.api_key else None
    authorization = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    request = (
        b"POST /projects/bench/models/const:predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n%s"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (authorization, len(body))
    ) + body
    with tempfile.TemporaryDirectory() as tmp:
        one = await gateway_round(args, request, Path(tmp), key)
        gateway = await per_request_us(one, args.requests)
    bare = await per_request_us(bare_round(request), args.requests)
    features = f"mirror fraction {args.mirror_fraction}, inference log {'off' if args.no_log else 'on'}"
    features += f", API key {'on' if key else 'off'}"
    print(f"request body {len(body):,} bytes; {features}; best of 5 rounds of {args.requests:,}")
    print(f"  bare pass-through (same parser): {bare:6.2f} us/request")
    ratio = gateway / bare
    print(f"  gateway worker:                  {gateway:6.2f} us/request  = {ratio:.1f}x the bare floor")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50_000, help="per round (default 50,000)")
    parser.add_argument("--mirror-fraction", type=float, default=0.1, help="share mirrored (default 0.1)")
    parser.add_argument("--no-log", action="store_true", help="inference log off")
    parser.add_argument("--api-key", action="store_true", help="the project needs a key; requests send it")
    return parser.parse_args()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
