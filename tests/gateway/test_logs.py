"""Inference-log shipping: the bounded shipper, the JSON-lines file, and the real Redis / NATS sinks.

The queue tests run against the real servers on this machine (Redis at 127.0.0.1:6379, NATS with
JetStream at 127.0.0.1:4222). Each test uses its own uniquely named stream and deletes it, so
parallel xdist workers never see each other's records. An unreachable server skips those tests,
except with ``CI=true``, where it is a failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest

from modelyard.errors import InvalidInput
from modelyard.gateway.logs import (
    ENCODE_SLICE,
    DiscardSink,
    InferenceLog,
    JsonLinesSink,
    LogShipper,
    open_sink,
)
from modelyard.gateway.logs.record import encode_lines, encode_record
from modelyard.gateway.logs.sinks._urls import DEFAULT_MAXLEN
from modelyard.gateway.logs.sinks.nats import DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT, NatsJetStreamSink
from modelyard.gateway.logs.sinks.redis import DEFAULT_REDIS_STREAM, RedisStreamSink

pytestmark = pytest.mark.anyio

REDIS = ("127.0.0.1", 6379)
NATS = ("127.0.0.1", 4222)
FAST_RETRY = 0.01  # the shortest back-off, so tests of failing sinks stay fast


def record(i: int = 0, **changes: object) -> InferenceLog:
    base = InferenceLog(
        time=1_700_000_000.25 + i,
        request_id=f"req-{i}",
        project="shop",
        model="ranker",
        version="3",
        replica="http://10.0.0.7:8080",
        role="primary",
        protocol="v2",
        status=200,
        latency_ms=12.5,
        request_bytes=321,
        response_bytes=123,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def full_record(i: int = 0) -> InferenceLog:
    """Every optional field set, including non-ASCII text: all must survive the round trip."""
    return record(
        i,
        role="mirror",
        protocol="tfserving",
        status=500,
        request_hash="a" * 32,
        response_hash="b" * 32,
        request_body='{"inputs": "héllo ✓"}',
        response_body="b64:AAEC",
        error="upstream timed out",
    )


def as_dict(rec: InferenceLog) -> dict[str, object]:
    return dataclasses.asdict(rec)


def _require(service: str, address: tuple[str, int], hello: bytes, check: bytes) -> None:
    """Skip (or fail with CI=true) unless ``address`` answers ``hello`` with a reply containing ``check``."""
    try:
        with socket.create_connection(address, timeout=2) as conn:
            conn.settimeout(2)
            if hello:
                conn.sendall(hello)
            reply = conn.recv(65536)
        if check not in reply:
            raise OSError(f"unexpected reply {reply[:200]!r}")
    except OSError as exc:
        message = f"{service} at {address[0]}:{address[1]} unusable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (required with CI=true)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> str:
    _require("Redis", REDIS, b"PING\r\n", b"+PONG")
    return f"redis://{REDIS[0]}:{REDIS[1]}/0"


@pytest.fixture(scope="session")
def nats_server() -> str:
    # The server greets with INFO {...}; JetStream must be enabled for the sink to work.
    _require("NATS JetStream", NATS, b"", b'"jetstream":true')
    return f"nats://{NATS[0]}:{NATS[1]}"


@pytest.fixture
async def redis_stream(redis_server: str) -> AsyncIterator[str]:
    """A unique stream name, deleted afterwards."""
    from redis.asyncio import Redis

    name = f"modelyard:test:{uuid.uuid4().hex}"
    yield name
    client = Redis.from_url(redis_server)
    try:
        await client.delete(name)
    finally:
        await client.aclose()


@pytest.fixture
async def jetstream(nats_server: str) -> AsyncIterator[tuple[str, str]]:
    """A unique (stream, subject) pair; the stream is deleted afterwards if the test created it."""
    import nats
    from nats.js.errors import NotFoundError

    token = uuid.uuid4().hex
    stream, subject = f"MODELYARD_TEST_{token}", f"modelyard.test.{token}"
    yield stream, subject
    nc = await nats.connect(nats_server, connect_timeout=2, allow_reconnect=False)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream(timeout=2).delete_stream(stream)
    finally:
        await nc.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class FakeSink:
    """An in-memory sink whose availability the test controls. It stands in for an outage that we
    cannot cause on the shared real Redis/NATS servers (stopping them would break other tests)."""

    name = "fake"

    def __init__(self, *, down: bool = False, open_failures: int = 0) -> None:
        self.down = down
        self.open_failures = open_failures
        self.opened = 0
        self.closed = 0
        self.batches: list[list[InferenceLog]] = []
        self.gate: asyncio.Event | None = None  # when set up, write() waits for it (a stalled sink)

    @property
    def records(self) -> list[InferenceLog]:
        return [rec for batch in self.batches for rec in batch]

    async def open(self) -> None:
        if self.open_failures > 0:
            self.open_failures -= 1
            raise ConnectionRefusedError("fake sink not up yet")
        self.opened += 1

    async def write(self, records: list[InferenceLog]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("fake sink is down")
        self.batches.append(list(records))

    async def close(self) -> None:
        self.closed += 1


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait until ``condition()`` is true (polling), failing the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.005)


# --- open_sink: URL formats and their errors ---------------------------------------------------------


def test_open_sink_builds_each_kind_of_sink(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "inference.jsonl"
    jsonl = open_sink(f"jsonl://{target}")
    assert isinstance(jsonl, JsonLinesSink)
    assert jsonl.path == target
    plain = open_sink(str(target))
    assert isinstance(plain, JsonLinesSink)
    assert plain.path == target
    relative = open_sink("logs/inference.jsonl")
    assert isinstance(relative, JsonLinesSink)
    assert relative.path == Path("logs/inference.jsonl")
    assert isinstance(open_sink("none"), DiscardSink)
    assert isinstance(open_sink(" none "), DiscardSink)


def test_open_sink_parses_redis_urls() -> None:
    sink = open_sink("redis://:secret@cache.internal:6380/2?stream=logs:gw&maxlen=5000")
    assert isinstance(sink, RedisStreamSink)
    assert (sink.url, sink.stream, sink.maxlen) == ("redis://:secret@cache.internal:6380/2", "logs:gw", 5000)
    default = open_sink("redis://127.0.0.1")
    assert isinstance(default, RedisStreamSink)
    assert (default.url, default.stream, default.maxlen) == (
        "redis://127.0.0.1",
        DEFAULT_REDIS_STREAM,
        DEFAULT_MAXLEN,
    )
    assert isinstance(open_sink("rediss://cache:6379/0"), RedisStreamSink)


def test_open_sink_parses_nats_urls() -> None:
    sink = open_sink("nats://nats.internal:4222?subject=logs.gw-1&stream=GW_LOGS&maxlen=10")
    assert isinstance(sink, NatsJetStreamSink)
    assert (sink.servers, sink.subject, sink.stream, sink.maxlen) == (
        "nats://nats.internal:4222",
        "logs.gw-1",
        "GW_LOGS",
        10,
    )
    default = open_sink("nats://127.0.0.1:4222")
    assert isinstance(default, NatsJetStreamSink)
    assert (default.subject, default.stream) == (DEFAULT_NATS_SUBJECT, DEFAULT_NATS_STREAM)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("ftp://host/file", "scheme 'ftp' is not supported"),
        ("kafka://user:pw@broker:9092", "scheme 'kafka' is not supported"),
        ("jsonl://host/logs.jsonl", "jsonl:///absolute/path.jsonl"),
        ("jsonl:///var/log/x.jsonl?rotate=1", "jsonl:///absolute/path.jsonl"),
        ("redis://", "redis://host:port/db"),
        ("redis://cache:99999/0", "redis://host:port/db"),
        ("redis://cache:6379/zero", "database must be a number"),
        ("redis://cache:6379/0?maxlen=lots", "maxlen must be a positive integer"),
        ("redis://cache:6379/0?maxlen=0", "maxlen must be a positive integer"),
        ("redis://cache:6379/0?stream=", "'stream' must be given once, non-empty"),
        ("redis://cache:6379/0?stream=a&stream=b", "'stream' must be given once, non-empty"),
        ("redis://cache:6379/0?decode_responses=true", "'decode_responses' is not supported"),
        ("nats://?subject=x", "nats://host:port"),
        ("nats://nats:4222/logs", "takes no path"),
        ("nats://nats:4222?subject=logs.*", "subject 'logs.*'"),
        ("nats://nats:4222?subject=logs..gw", "subject 'logs..gw'"),
        ("nats://nats:4222?stream=GW.LOGS", "stream 'GW.LOGS'"),
        ("nats://nats:4222?durable=x", "'durable' is not supported"),
    ],
)
def test_open_sink_rejects_bad_urls_naming_the_field(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match="log_sink") as info:
        open_sink(url)
    assert info.value.field == "log_sink"
    assert message in info.value.message


def test_open_sink_errors_never_echo_a_password() -> None:
    for url in ("kafka://user:hunter2@broker:9092", "redis://:hunter2@cache:6379/x"):
        with pytest.raises(InvalidInput) as info:
            open_sink(url)
        assert "hunter2" not in info.value.message


# --- the shipper ---------------------------------------------------------------------------------


async def test_json_lines_file_holds_one_intact_object_per_line_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "inference.jsonl"
    first = [record(0), full_record(1), record(2, role="mirror", request_id="req-0")]
    shipper = LogShipper(open_sink(f"jsonl://{path}"))
    await shipper.start()
    assert all(shipper.submit(rec) for rec in first)
    await shipper.stop()
    assert shipper.shipped == 3

    shipper = LogShipper(open_sink(str(path)))  # a second run appends, it does not truncate
    await shipper.start()
    shipper.submit(record(3))
    await shipper.stop()

    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [as_dict(rec) for rec in [*first, record(3)]]
    assert set(json.loads(lines[1])) == {field.name for field in dataclasses.fields(InferenceLog)}


async def test_a_batch_larger_than_an_encoding_slice_is_written_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    records = [record(i, request_id=f"req-{i}") for i in range(2 * ENCODE_SLICE + 7)]
    sink = JsonLinesSink(path)
    await sink.open()
    await sink.write(records)  # encoded slice by slice, with the loop free in between
    await sink.close()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{i}" for i in range(len(records))]
    assert json.loads(lines[-1]) == as_dict(records[-1])


def test_encode_record_and_encode_lines_give_orjson_own_output() -> None:
    records = [record(0), full_record(1)]
    assert [encode_record(rec) for rec in records] == [orjson.dumps(rec) for rec in records]
    assert encode_lines(records) == b"".join(orjson.dumps(rec) + b"\n" for rec in records)


async def test_submit_never_blocks_and_drops_and_counts_when_the_buffer_is_full() -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()  # the sink stalls: nothing leaves the buffer
    counts: collections.Counter[str] = collections.Counter()
    shipper = LogShipper(
        sink, capacity=100, batch_size=10, count=lambda outcome, n: counts.update({outcome: n})
    )
    await shipper.start()

    # submit() is synchronous: with the sink stalled, blocking would hang here (pytest-timeout).
    accepted = [shipper.submit(record(i)) for i in range(20_000)]
    assert accepted.count(True) == 100
    assert accepted[:100] == [True] * 100
    assert shipper.dropped == counts["dropped"] == 19_900

    async with asyncio.timeout(5):  # the sink never answers: stop() gives up after its own 0.2 s
        await shipper.stop(timeout_s=0.2)
    # Everything is accounted for: the stalled batch and the rest of the buffer count as dropped.
    assert shipper.shipped == shipper.failed == 0
    assert shipper.dropped == counts["dropped"] == 20_000
    assert not shipper.submit(record())  # after stop, records are refused (and counted)
    assert shipper.dropped == 20_001
    assert sink.closed == 1


async def test_submit_never_raises_even_when_the_metrics_hook_does() -> None:
    def broken(outcome: str, n: int) -> None:
        raise RuntimeError("metrics backend gone")

    sink = FakeSink()
    shipper = LogShipper(sink, capacity=1, count=broken)
    assert shipper.submit(record(0))
    assert not shipper.submit(record(1))
    await shipper.start()
    await shipper.stop()
    assert (shipper.shipped, shipper.dropped) == (1, 1)
    assert sink.records == [record(0)]


async def test_a_down_sink_loses_at_most_the_buffer_counts_failures_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # FakeSink stands in for an outage we cannot cause on the shared real servers.
    sink = FakeSink(down=True)
    counts: collections.Counter[str] = collections.Counter()
    shipper = LogShipper(
        sink,
        capacity=50,
        batch_size=10,
        flush_interval_s=0.01,
        count=lambda outcome, n: counts.update({outcome: n}),
        retry_initial_s=FAST_RETRY,
        retry_max_s=2 * FAST_RETRY,
    )
    await shipper.start()
    with caplog.at_level(logging.WARNING, logger="modelyard.gateway.logs"):
        accepted = sum(shipper.submit(record(i)) for i in range(200))
        await until(lambda: shipper.failed == 50)
        assert accepted == 50
        assert shipper.dropped == 150
        assert shipper.shipped == 0
        assert counts == {"failed": 50, "dropped": 150}
        # Five failed batches, one warning: the warning is rate-limited, not one per batch.
        failures = [r for r in caplog.records if "failed to take" in r.getMessage()]
        assert len(failures) == 1

        sink.down = False  # the sink comes back: new records flow again, nothing else is needed
        fresh = [record(1000 + i) for i in range(25)]
        assert all(shipper.submit(rec) for rec in fresh)
        await until(lambda: shipper.shipped == 25)
    await shipper.stop()
    assert sink.records == fresh
    assert counts == {"failed": 50, "dropped": 150, "shipped": 25}


async def test_a_sink_that_cannot_open_does_not_stop_start_and_is_retried() -> None:
    sink = FakeSink(open_failures=3)
    counts: collections.Counter[str] = collections.Counter()
    shipper = LogShipper(
        sink,
        count=lambda outcome, n: counts.update({outcome: n}),
        retry_initial_s=FAST_RETRY,
        retry_max_s=2 * FAST_RETRY,
    )
    await shipper.start()  # does not raise
    assert counts["open_failed"] == 1
    shipper.submit(record(0))  # buffered while the sink is unavailable
    await until(lambda: shipper.shipped == 1)
    assert shipper.open_failures == counts["open_failed"] == 3
    await shipper.stop()
    assert sink.records == [record(0)]
    assert (sink.opened, sink.closed) == (1, 1)


async def test_stop_flushes_what_is_buffered() -> None:
    sink = FakeSink()
    # A flush interval and batch size the test never reaches: only stop() ships these records.
    shipper = LogShipper(sink, batch_size=10_000, flush_interval_s=60)
    await shipper.start()
    await asyncio.sleep(0.01)  # the worker finds the buffer empty and goes idle for the interval
    records = [record(i) for i in range(500)]
    for rec in records:
        shipper.submit(rec)
    await asyncio.sleep(0.05)
    assert shipper.shipped == 0
    assert shipper.pending == 500
    await shipper.stop()
    assert sink.records == records
    assert shipper.shipped == 500
    assert shipper.pending == 0


async def test_full_batches_ship_without_waiting_for_the_flush_interval() -> None:
    sink = FakeSink()
    shipper = LogShipper(sink, batch_size=4, flush_interval_s=60)
    await shipper.start()
    for i in range(8):
        shipper.submit(record(i))
    await until(lambda: shipper.shipped == 8, timeout_s=1.0)
    assert [len(batch) for batch in sink.batches] == [4, 4]
    await shipper.stop()


class SlowSink(FakeSink):
    """Each write takes a millisecond, as a thread hand-off and a file write do."""

    async def write(self, records: list[InferenceLog]) -> None:
        await asyncio.sleep(0.001)
        await super().write(records)


async def test_steady_traffic_ships_one_batch_per_flush_interval_not_one_per_write() -> None:
    sink = SlowSink()
    shipper = LogShipper(sink, batch_size=10_000, flush_interval_s=0.2)
    await shipper.start()
    submitted = []
    started = time.monotonic()
    while time.monotonic() - started < 0.7:  # a record every ~0.5 ms, never a pause
        rec = record(len(submitted))
        submitted.append(rec)
        shipper.submit(rec)
        await asyncio.sleep(0.0005)
    # Shipping again as soon as a write returned made a batch per millisecond here (hundreds).
    assert 2 <= len(sink.batches) <= 5, [len(batch) for batch in sink.batches]
    await shipper.stop()
    assert sink.records == submitted


async def test_stop_when_the_sink_fails_during_the_final_flush_drops_the_rest_quickly() -> None:
    sink = FakeSink(down=True)
    shipper = LogShipper(sink, batch_size=10, flush_interval_s=60, retry_initial_s=5, retry_max_s=5)
    await shipper.start()
    for i in range(35):
        shipper.submit(record(i))
    started = time.perf_counter()
    await shipper.stop(timeout_s=5)
    assert time.perf_counter() - started < 1.0  # no back-off retries inside stop()
    assert (shipper.failed, shipper.dropped, shipper.shipped) == (10, 25, 0)


# --- the real servers ------------------------------------------------------------------------------


async def test_redis_stream_receives_every_record_intact(redis_server: str, redis_stream: str) -> None:
    from redis.asyncio import Redis

    records = [full_record(i) if i % 2 else record(i) for i in range(300)]  # two batches of <= 256
    shipper = LogShipper(open_sink(f"{redis_server}?stream={redis_stream}"))
    await shipper.start()
    for rec in records:
        shipper.submit(rec)
    await shipper.stop()
    assert shipper.shipped == 300

    client = Redis.from_url(redis_server)
    try:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(redis_stream))
    finally:
        await client.aclose()
    assert [set(fields) for _, fields in entries] == [{b"record"}] * 300
    assert [orjson.loads(fields[b"record"]) for _, fields in entries] == [as_dict(rec) for rec in records]


async def test_redis_stream_is_trimmed_approximately_to_maxlen(redis_server: str, redis_stream: str) -> None:
    from redis.asyncio import Redis

    sink = RedisStreamSink(redis_server, stream=redis_stream, maxlen=10)
    await sink.open()
    try:
        for start in range(0, 1000, 250):
            await sink.write([record(i) for i in range(start, start + 250)])
    finally:
        await sink.close()
    client = Redis.from_url(redis_server)
    try:
        length = await client.xlen(redis_stream)
    finally:
        await client.aclose()
    # "~" trims whole radix-tree nodes (100 entries by default), so it keeps a little more than 10.
    assert 10 <= length <= 250


async def test_redis_sink_that_is_down_fails_fast_and_loses_at_most_the_buffer(closed_port: int) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    sink = open_sink(f"redis://127.0.0.1:{closed_port}/0?stream=never")
    started = time.perf_counter()
    with pytest.raises(RedisConnectionError):
        await sink.open()
    assert time.perf_counter() - started < 1.0

    shipper = LogShipper(sink, capacity=20, retry_initial_s=FAST_RETRY, retry_max_s=2 * FAST_RETRY)
    await shipper.start()  # does not raise: retries in the background
    accepted = sum(shipper.submit(record(i)) for i in range(50))
    await until(lambda: shipper.open_failures >= 3)
    await shipper.stop(timeout_s=1)
    assert accepted == 20
    assert (shipper.shipped, shipper.failed, shipper.dropped) == (0, 0, 50)


async def test_nats_jetstream_receives_every_record_intact(
    nats_server: str, jetstream: tuple[str, str]
) -> None:
    import nats

    stream, subject = jetstream
    records = [full_record(i) if i % 3 == 0 else record(i) for i in range(300)]
    shipper = LogShipper(open_sink(f"{nats_server}?subject={subject}&stream={stream}&maxlen=5000"))
    await shipper.start()  # creates the stream
    for rec in records:
        shipper.submit(rec)
    await shipper.stop()
    assert (shipper.shipped, shipper.failed) == (300, 0)

    nc = await nats.connect(nats_server, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=2)
        info = await js.stream_info(stream)
        assert info.config.subjects == [subject]
        assert info.config.max_msgs == 5000
        assert info.state.messages == 300
        consumer = await js.pull_subscribe(subject, stream=stream)
        received: list[object] = []
        while len(received) < 300:
            for msg in await consumer.fetch(300 - len(received), timeout=2):
                received.append(orjson.loads(msg.data))
                await msg.ack()
        await consumer.unsubscribe()
    finally:
        await nc.close()
    assert received == [as_dict(rec) for rec in records]


async def test_nats_sink_reopens_an_existing_stream_and_refuses_one_that_misses_the_subject(
    nats_server: str, jetstream: tuple[str, str]
) -> None:
    stream, subject = jetstream
    first = NatsJetStreamSink(nats_server, subject=subject, stream=stream)
    await first.open()  # creates
    await first.close()
    again = NatsJetStreamSink(nats_server, subject=subject, stream=stream)
    await again.open()  # finds it: no error
    await again.write([record(0)])
    await again.close()
    wrong = NatsJetStreamSink(nats_server, subject=f"{subject}.elsewhere", stream=stream)
    with pytest.raises(RuntimeError, match="captures"):
        await wrong.open()


async def test_nats_sink_that_is_down_raises_within_its_timeout(closed_port: int) -> None:
    sink = NatsJetStreamSink(f"nats://127.0.0.1:{closed_port}", timeout_s=0.3)
    started = time.perf_counter()
    with pytest.raises((OSError, TimeoutError)):
        await sink.open()
    assert time.perf_counter() - started < 1.5
    with pytest.raises(RuntimeError, match="not open"):
        await sink.write([record()])
    await sink.close()  # harmless when never opened
