"""Reading the gateway's inference log back: a tailed JSON-lines file (rotation, truncation, partial
lines), a Redis stream and a NATS JetStream stream written by the gateway's own sinks.

The queue tests run against the real servers on this machine (Redis at 127.0.0.1:6379, NATS with
JetStream at 127.0.0.1:4222), each on a uniquely named stream it deletes afterwards. An unreachable
server skips them, except with ``CI=true``, where it is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
from prometheus_client import generate_latest

from modelyard.errors import InvalidInput
from modelyard.gateway.logs.sinks.files import JsonLinesSink
from modelyard.gateway.logs.sinks.nats import NatsJetStreamSink
from modelyard.gateway.logs.sinks.redis import RedisStreamSink
from modelyard.validation.logread import (
    JsonLinesSource,
    LogSource,
    NatsJetStreamSource,
    RedisStreamSource,
    open_source,
)
from modelyard.validation.online import OnlineAnalysis
from modelyard.validation.online_metrics import analysis_registry
from tests.validation.online_support import line, mirrored_pairs, oip_body, record

pytestmark = pytest.mark.anyio
REDIS = ("127.0.0.1", 6379)
NATS = ("127.0.0.1", 4222)


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(x)["request_id"] for x in lines]


async def read_all(source: LogSource, want: int, timeout_s: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += await source.read(1000, 0.1)
    return got


def append(path: Path, *lines: bytes) -> None:
    raw_append(path, b"".join(x + b"\n" for x in lines))


def raw_append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_a_file_is_tailed_from_its_end_or_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    append(path, line("old-1", "v1"), line("old-2", "v1"))
    source = JsonLinesSource(path)
    assert await source.read(10, 0.05) == []  # "end": what was there before is not read
    append(path, line("new-1", "v1"))
    assert ids(await source.read(10, 0.5)) == ["new-1"]
    position = source.position
    append(path, line("new-2", "v1"), line("new-3", "v1"))
    assert ids(await source.read(1, 0.5)) == ["new-2"]  # at most `limit`; the rest waits
    await source.close()
    again = JsonLinesSource(path, start=position)  # resume where a reader stopped
    assert ids(await read_all(again, 2)) == ["new-2", "new-3"]
    everything = JsonLinesSource(path, start="start")
    assert len(await read_all(everything, 5)) == 5
    raw_append(path, line("half", "v1")[:30])  # a line being written when a reader starts at the end
    late = JsonLinesSource(path)
    assert await late.read(10, 0.01) == []
    raw_append(path, line("half", "v1")[30:] + b"\n" + line("whole", "v1") + b"\n")
    assert ids(await read_all(late, 1)) == ["whole"]


async def test_partial_blank_and_oversized_lines(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    path.touch()
    source = JsonLinesSource(path, max_record_bytes=2000, chunk_bytes=256)
    assert await source.read(10, 0.01) == []
    whole = line("a", "v1")
    raw_append(path, whole[:40])  # a batch half written: nothing yet
    assert await source.read(10, 0.05) == []
    raw_append(path, whole[40:] + b"\n\n" + b"x" * 5000 + b"\n" + line("b", "v1") + b"\n")
    assert ids(await read_all(source, 2)) == ["a", "b"]
    assert source.skipped == 1
    assert int(source.position) == path.stat().st_size
    metrics = generate_latest(analysis_registry(OnlineAnalysis(source))).decode()
    assert "modelyard_analysis_skipped_total 1.0" in metrics


async def test_a_read_is_bounded_in_bytes_not_only_in_lines(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    path.touch()
    source = JsonLinesSource(path, start="start", max_batch_bytes=25_000, chunk_bytes=4096)
    body = oip_body([1.5] * 2000)  # about 10 KB a record
    append(path, *(line(f"r{i}", "v1", body=body) for i in range(20)))
    append(path, line("huge", "v1", body=oip_body([1.5] * 8000)))  # over the batch, under the line cap
    batches = []
    while len(got := await source.read(512, 0.05)) > 0:
        assert sum(map(len, got)) <= 25_000 or len(got) == 1
        batches.append(ids(got))
    assert [len(batch) for batch in batches] == [2] * 10 + [1]
    assert [i for batch in batches for i in batch] == [f"r{i}" for i in range(20)] + ["huge"]
    assert int(source.position) == path.stat().st_size


async def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    path.touch()
    source = JsonLinesSource(path)
    assert await source.read(10, 0.01) == []  # opened: from here on
    append(path, line("a", "v1"))
    assert ids(await source.read(10, 0.5)) == ["a"]
    append(path, line("b", "v1"))  # written just before the rotation, not read yet
    path.rename(tmp_path / "inference.jsonl.1")
    assert ids(await read_all(source, 1)) == ["b"]
    append(path, line("c", "v1"))  # the new file
    assert ids(await read_all(source, 1)) == ["c"]


async def test_truncation_restarts_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "inference.jsonl"
    append(path, *(line(f"x{i}", "v1") for i in range(20)))
    source = JsonLinesSource(path)
    assert await source.read(10, 0.05) == []
    os.truncate(path, 0)  # copytruncate
    append(path, line("after", "v1"))
    assert ids(await read_all(source, 1)) == ["after"]


async def test_a_missing_file_is_a_failed_read_until_it_appears(tmp_path: Path) -> None:
    source = JsonLinesSource(tmp_path / "later.jsonl", start="start")
    with pytest.raises(FileNotFoundError):
        await source.read(10, 0.05)
    append(tmp_path / "later.jsonl", line("a", "v1"))
    assert ids(await source.read(10, 0.5)) == ["a"]


def test_open_source_takes_the_gateways_log_sink_urls(tmp_path: Path) -> None:
    assert isinstance(open_source(str(tmp_path / "x.jsonl")), JsonLinesSource)
    assert isinstance(open_source(f"jsonl://{tmp_path}/x.jsonl"), JsonLinesSource)
    redis = open_source("redis://127.0.0.1:6379/0?stream=logs")
    assert isinstance(redis, RedisStreamSource)
    assert redis.stream == "logs"
    nats = open_source("nats://127.0.0.1:4222?subject=a.b&stream=S")
    assert isinstance(nats, NatsJetStreamSource)
    assert (nats.subject, nats.stream) == ("a.b", "S")
    for bad, words in (("none", "nothing to analyse"), ("ftp://x", "not supported")):
        with pytest.raises(InvalidInput) as refused:
            open_source(bad)
        assert refused.value.field == "analysis_log"
        assert words in refused.value.message


async def test_the_analysis_thread_follows_a_file_the_gateway_sink_writes(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "inference.jsonl"
    sink = JsonLinesSink(path)
    await sink.open()
    analysis = OnlineAnalysis(JsonLinesSource(path))
    analysis.start()
    try:
        await wait_for(analysis.healthy)
        await sink.write([record(f"r{i}", "v1", body=oip_body([1.0])) for i in range(5)])
        await sink.write([record(f"r{i}", "v2", "mirror", body=oip_body([1.0])) for i in range(5)])
        await wait_for(lambda: analysis.stats("p", "m").get("v2", None) is not None
                       and analysis.stats("p", "m")["v2"].compared == 5)  # fmt: skip
    finally:
        analysis.stop()
        await sink.close()
    assert not analysis.healthy()


def test_an_unreadable_log_makes_the_analysis_unhealthy_and_stop_is_prompt(tmp_path: Path) -> None:
    analysis = OnlineAnalysis(JsonLinesSource(tmp_path / "missing.jsonl"))
    analysis.start()
    deadline = time.monotonic() + 5
    while analysis.read_failures < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not analysis.healthy()
    assert "missing.jsonl" in (analysis.problem or "")
    started = time.monotonic()
    analysis.stop()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == "modelyard-analysis" for t in threading.enumerate())


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    import anyio

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await anyio.sleep(0.02)


# -- Redis and NATS ------------------------------------------------------------------------------


def _require(service: str, address: tuple[str, int], hello: bytes, check: bytes) -> None:
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


@pytest.fixture
async def redis_stream() -> AsyncIterator[str]:
    _require("Redis", REDIS, b"PING\r\n", b"+PONG")
    from redis.asyncio import Redis

    name = f"modelyard:test:{uuid.uuid4().hex}"
    yield name
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await client.delete(name)
    finally:
        await client.aclose()


@pytest.fixture
async def jetstream() -> AsyncIterator[tuple[str, str]]:
    _require("NATS JetStream", NATS, b"", b'"jetstream":true')
    import nats
    from nats.js.errors import NotFoundError

    token = uuid.uuid4().hex
    stream, subject = f"MODELYARD_TEST_{token}", f"modelyard.test.{token}"
    yield stream, subject
    nc = await nats.connect("nats://127.0.0.1:4222", connect_timeout=2, allow_reconnect=False)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream(timeout=2).delete_stream(stream)
    finally:
        await nc.close()


REDIS_URL, NATS_URL = "redis://127.0.0.1:6379/0", "nats://127.0.0.1:4222"
Sink = RedisStreamSink | NatsJetStreamSink


async def _queue_round_trip(sink: Sink, make: Callable[[str], LogSource]) -> None:
    """Records written before a reader starts at the end are not read, those after are; a reader
    started at its predecessor's position picks up exactly where it stopped."""
    await sink.open()
    try:
        await sink.write([record("before", "v1")])
        source = make("end")
        assert await source.read(10, 0.1) == []
        pairs = [orjson.loads(x) for x in mirrored_pairs(3)]
        await sink.write(
            [record(d["request_id"], d["version"], d["role"], d["response_body"]) for d in pairs]
        )
        got = await read_all(source, 6)
        assert ids(got) == ["r0", "r0", "r1", "r1", "r2", "r2"]
        position = source.position
        await source.close()
        await sink.write([record("later", "v1")])
        resumed = make(position)
        assert ids(await read_all(resumed, 1)) == ["later"]
        await resumed.close()
        everything = make("start")
        assert len(await read_all(everything, 8)) == 8
        analysis = OnlineAnalysis()
        analysis.feed(got)
        assert analysis.stats("p", "m")["v2"].agreed == 3
        await everything.close()
    finally:
        await sink.close()


def _redis(stream: str) -> tuple[Sink, Callable[..., LogSource]]:
    """The gateway's Redis sink on ``stream`` and a maker of sources reading it (start, options)."""
    sink = RedisStreamSink(REDIS_URL, stream=stream)
    return sink, lambda start, **kw: RedisStreamSource(REDIS_URL, stream=stream, start=start, **kw)


def _nats(jetstream: tuple[str, str]) -> tuple[Sink, Callable[..., LogSource]]:
    """The gateway's JetStream sink on (stream, subject) and a maker of sources reading it."""
    stream, subject = jetstream
    sink = NatsJetStreamSink(NATS_URL, subject=subject, stream=stream)
    return sink, lambda start, **kw: NatsJetStreamSource(
        NATS_URL, subject=subject, stream=stream, start=start, **kw
    )


async def test_a_redis_stream_is_read_where_the_gateway_writes_it(redis_stream: str) -> None:
    await _queue_round_trip(*_redis(redis_stream))


async def test_a_jetstream_stream_is_read_where_the_gateway_writes_it(jetstream: tuple[str, str]) -> None:
    await _queue_round_trip(*_nats(jetstream))


async def test_a_queue_that_is_down_is_a_failed_read(tmp_path: Path) -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        for source in (
            RedisStreamSource(f"redis://127.0.0.1:{port}/0", timeout_s=0.5),
            NatsJetStreamSource(f"nats://127.0.0.1:{port}", timeout_s=0.5),
        ):
            with pytest.raises(Exception):  # noqa: B017 - each client raises its own kind
                await source.read(10, 0.1)
            await source.close()


async def _bounded_reads(sink: Sink, make: Callable[..., LogSource]) -> None:
    """Large records come in several reads, each within the byte budget, none lost; a record over
    the per-record cap is skipped and counted, and the records after it are read."""
    budget, cap = 50_000, 60_000
    body = oip_body([1.5] * 2000)  # about 8.5 KB a record
    first = [record(f"r{i:03d}", "v1", body=body) for i in range(30)]
    huge = record("huge", "v1", body=oip_body([1.5] * 20_000))  # about 80 KB: over the cap
    after = [record(f"s{i:03d}", "v1", body=body) for i in range(10)]
    await sink.open()
    try:
        await sink.write([*first, huge, *after])
        source = make("start", max_batch_bytes=budget, max_record_bytes=cap)
        batches: list[list[bytes]] = []
        deadline = time.monotonic() + 10
        while sum(map(len, batches)) < 40 and time.monotonic() < deadline:
            if got := await source.read(512, 0.2):
                batches.append(got)
        await source.close()
    finally:
        await sink.close()
    assert [i for batch in batches for i in ids(batch)] == [r.request_id for r in first + after]
    assert source.skipped == 1
    assert len(batches) >= 6  # 40 records of 8.5 KB cannot come in fewer reads of 50 KB
    assert all(sum(map(len, batch)) <= budget for batch in batches)
    assert max(map(len, batches)) > 1  # a read takes as many records as the budget holds


async def test_a_redis_read_is_bounded_in_bytes(redis_stream: str) -> None:
    await _bounded_reads(*_redis(redis_stream))


async def test_a_jetstream_read_is_bounded_in_bytes(jetstream: tuple[str, str]) -> None:
    await _bounded_reads(*_nats(jetstream))


async def _unbalanced_reads(sink: Sink, make: Callable[..., LogSource]) -> None:
    """Large records after a run of small ones still come within the byte budget: what a read
    takes is measured on the server, not guessed from the records read before."""
    budget = 50_000
    small = [record(f"a{i:03d}", "v1") for i in range(200)]  # about 300 bytes each
    large = [record(f"b{i:03d}", "v1", body=oip_body([1.5] * 3000)) for i in range(12)]  # ~13 KB
    await sink.open()
    try:
        source = make("end", max_batch_bytes=budget)
        assert await source.read(512, 0.05) == []
        await sink.write(small)
        got = await read_all(source, len(small))
        assert ids(got) == [r.request_id for r in small]
        await sink.write(large)
        batches: list[list[bytes]] = []
        deadline = time.monotonic() + 10
        while sum(map(len, batches)) < len(large) and time.monotonic() < deadline:
            if batch := await source.read(512, 0.2):
                batches.append(batch)
        await source.close()
    finally:
        await sink.close()
    assert [i for batch in batches for i in ids(batch)] == [r.request_id for r in large]
    assert all(sum(map(len, batch)) <= budget for batch in batches), [len(b) for b in batches]
    assert max(map(len, batches)) == 3  # as many as fit: 3 of ~13 KB in 50 KB
    assert source.skipped == 0


async def test_a_redis_read_of_unbalanced_records_stays_in_budget(redis_stream: str) -> None:
    await _unbalanced_reads(*_redis(redis_stream))


async def test_a_jetstream_read_of_unbalanced_records_stays_in_budget(jetstream: tuple[str, str]) -> None:
    await _unbalanced_reads(*_nats(jetstream))
