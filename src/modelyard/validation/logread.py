"""Reading the gateway's inference log back: a JSON-lines file, a Redis stream, a NATS JetStream.

Every source satisfies :class:`LogSource`: :meth:`~LogSource.read` hands back the next records as
the JSON bytes the gateway wrote (``gateway/logs/record.py``), waiting a little when there are
none, and raises when the log cannot be read at all (the caller counts that as "cannot see", backs
off and reads again: a source resumes where it stopped). :func:`open_source` takes the same URLs as
the gateway's ``log_sink`` (``gateway/logs/sinks``), so one string names both ends.

Where a source starts (``start``): ``"end"`` (only records written from now on), ``"start"``
(everything still kept), or a position a source reported earlier (``position``): a byte offset in
the file, a Redis entry id, a JetStream stream sequence number.

How much one read holds, however large the records (with ``log_payload full`` the gateway logs
both bodies whole: a request up to its ``max_body_bytes``, 16 MiB by default, a response of any
size; base64 when not UTF-8): every source takes ``max_batch_bytes`` (a read's budget, 16 MiB by
default) and ``max_record_bytes`` (64 MiB). A read hands out at most ``max_batch_bytes`` of records,
or one record when the next is larger than that, so however unbalanced the records, the file
and Redis sources hold at most about ``max_batch_bytes + max_record_bytes`` (the NATS source
``max_batch_bytes`` plus one message, which the server's ``max_payload`` bounds). A record over
``max_record_bytes`` is skipped, counted in ``skipped``, and never parsed; the records after it are
read as usual. The file source stops reading at the budget; the Redis source measures the records
on the server (a Lua script) and leaves there what does not fit, and an over-cap record's bytes
never leave it; the JetStream source asks the server for at most the budget (a pull's
``max_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import orjson

from modelyard.errors import InvalidInput
from modelyard.gateway.logs.sinks import open_sink
from modelyard.gateway.logs.sinks.files import DiscardSink, JsonLinesSink
from modelyard.gateway.logs.sinks.nats import NatsJetStreamSink
from modelyard.gateway.logs.sinks.redis import RedisStreamSink

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["JsonLinesSource", "LogSource", "NatsJetStreamSource", "RedisStreamSource", "open_source"]

FIELD = "analysis_log"
MAX_WAIT_S = 1.0  # the longest one read blocks: a stop never waits longer than this
MAX_BATCH_BYTES = 16 << 20  # what one read hands out at most (or one larger record)
MAX_RECORD_BYTES = 64 << 20  # a longer record is skipped, counted, never parsed


class LogSource(Protocol):
    """Where an analysis reads inference-log records from."""

    name: str  # "jsonl", "redis", "nats": for metrics and the REST view

    @property
    def position(self) -> str:
        """Where the next read starts, as ``start`` accepts it."""
        ...

    @property
    def skipped(self) -> int:
        """Records over ``max_record_bytes`` read so far, dropped unparsed."""
        ...

    async def read(self, limit: int, wait_s: float) -> list[bytes]:
        """Up to ``limit`` records (each one JSON object, as written), waiting up to ``wait_s`` for
        the first; ``[]`` when none came. Raises when the log cannot be read (the next call retries)."""
        ...

    async def close(self) -> None:
        """Release files and connections; a later :meth:`read` opens them again."""
        ...


def open_source(url: str, start: str = "end") -> LogSource:
    """The source a gateway ``log_sink`` URL names: a path or ``jsonl:///path``, ``redis://...``,
    ``nats://...``. ``none`` (the gateway keeps no log) and malformed URLs raise
    :class:`~modelyard.errors.InvalidInput` naming ``analysis_log``."""
    try:
        sink = open_sink(url)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("log_sink", FIELD, 1), field=FIELD) from None
    if isinstance(sink, DiscardSink):
        raise InvalidInput(f"{FIELD} 'none' keeps no records: there is nothing to analyse", field=FIELD)
    if isinstance(sink, JsonLinesSink):
        return JsonLinesSource(sink.path, start=start)
    if isinstance(sink, RedisStreamSink):
        return RedisStreamSource(sink.url, stream=sink.stream, start=start)
    if isinstance(sink, NatsJetStreamSink):
        return NatsJetStreamSource(sink.servers, subject=sink.subject, stream=sink.stream, start=start)
    raise InvalidInput(f"{FIELD}: no reader for the {sink.name} log", field=FIELD)


def _check_start(start: str, digits_ok: bool = True) -> str:
    if start in ("end", "start") or (digits_ok and start.isdigit()):
        return start
    raise InvalidInput(f"start must be 'end', 'start' or a position, not {start!r}", field="start")


class JsonLinesSource:
    """Tails a JSON-lines file the way ``tail -F`` does.

    Reads whole lines only (a line still being written waits for its newline). When the file is
    replaced (rotated: the path names another inode), the old one is read to its end first and the
    new one from its start; when it shrinks under the position (truncated), reading restarts at 0.
    A line longer than ``max_record_bytes`` is skipped (counted in ``skipped``), never buffered whole.
    A read hands out at most ``max_batch_bytes`` of lines (always at least one line), and buffers
    little more, so the reader holds at most about ``max_batch_bytes + max_record_bytes`` however long
    the lines it reads: a count of lines alone would allow ``limit`` lines of the longest size.
    """

    name = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: str = "end",
        chunk_bytes: int = 1 << 20,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        poll_s: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self._start = _check_start(start)
        self.chunk_bytes = chunk_bytes
        self.max_record_bytes = max_record_bytes
        self.max_batch_bytes = max_batch_bytes
        self.poll_s = poll_s
        self.skipped = 0  # over-long lines dropped
        self._file: BinaryIO | None = None
        self._offset = 0  # of the first byte not handed out yet, in the open file
        self._partial = b""  # the start of a line whose newline has not been read yet
        self._oversized = False  # dropping the rest of an over-long line
        self._skipped_bytes = 0  # blank or over-long lines read since the last line kept
        self._ready: deque[tuple[bytes, int]] = deque()  # (line, bytes it moves the position)
        self._ready_bytes = 0  # of the lines in _ready

    @property
    def position(self) -> str:
        return str(self._offset)

    async def read(self, limit: int, wait_s: float) -> list[bytes]:
        """Up to ``limit`` lines; polls the file every ``poll_s`` until ``wait_s`` has passed."""
        deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
        while True:
            lines = self._read_now(limit)
            left = deadline - time.monotonic()
            if lines or left <= 0:
                return lines
            await asyncio.sleep(min(self.poll_s, left))

    async def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _read_now(self, limit: int) -> list[bytes]:
        if self._file is None:
            self._open(self._start)
        while len(self._ready) < limit and self._ready_bytes < self.max_batch_bytes and self._fill():
            pass
        lines: list[bytes] = []
        taken = 0
        while self._ready and len(lines) < limit:
            line, size = self._ready[0]
            if lines and taken + len(line) > self.max_batch_bytes:
                break
            self._ready.popleft()
            self._ready_bytes -= len(line)
            taken += len(line)
            lines.append(line)
            self._offset += size
        if not self._ready:  # blank or skipped lines after the last one handed out
            self._offset, self._skipped_bytes = self._offset + self._skipped_bytes, 0
        return lines

    def _open(self, start: str) -> None:
        """Open the path (FileNotFoundError when it does not exist: the gateway has not started)."""
        file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        size = os.fstat(file.fileno()).st_size
        offset = size if start == "end" else 0 if start == "start" else min(int(start), size)
        mid_line = False
        if offset:  # in the middle of a line (one being written now): start after it
            file.seek(offset - 1)
            mid_line = file.read(1) != b"\n"
        file.seek(offset)
        self._file, self._offset = file, offset
        self._restart()
        self._oversized = mid_line
        self._start = "start"  # a file that replaces this one is read from its first line

    def _restart(self) -> None:
        self._partial, self._oversized, self._skipped_bytes = b"", False, 0
        self._ready.clear()
        self._ready_bytes = 0

    def _fill(self) -> bool:
        """Read one chunk into ``_ready``; False at the end of the file (after checking rotation)."""
        assert self._file is not None
        data = self._file.read(self.chunk_bytes)
        if not data:
            return self._reopen_if_replaced()
        lines = data.split(b"\n")
        lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        for line in lines:
            size = len(line) + 1
            if self._oversized:  # the end of a line already being skipped
                self._oversized = False
                self._skipped_bytes += size
            elif len(line) > self.max_record_bytes or not line.strip():
                self.skipped += 1 if line.strip() else 0
                self._skipped_bytes += size
            else:
                self._ready.append((line, size + self._skipped_bytes))
                self._ready_bytes += len(line)
                self._skipped_bytes = 0
        if len(self._partial) > self.max_record_bytes:
            self.skipped += 0 if self._oversized else 1
            self._skipped_bytes += len(self._partial)
            self._partial, self._oversized = b"", True
        return True

    def _reopen_if_replaced(self) -> bool:
        """At the end of the open file: follow a rotation or a truncation; True if it did."""
        assert self._file is not None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # rotated away, the new file not made yet: keep the old one until it is
        mine = os.fstat(self._file.fileno())
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            self._file.close()
            self._file = None
            self._open("start")
            return True
        if mine.st_size < self._file.tell():  # truncated in place (copytruncate)
            self._file.seek(0)
            self._offset = 0
            self._restart()
            return True
        return False


def _check_bounds(max_batch_bytes: int, max_record_bytes: int) -> None:
    if min(max_batch_bytes, max_record_bytes) < 1:
        raise InvalidInput("max_batch_bytes and max_record_bytes must be positive", field="max_batch_bytes")


# Entries after ARGV[1], read on the server one XRANGE at a time, until ARGV[2] entries or ARGV[3]
# bytes of records (at least one record); a record over ARGV[4] bytes is replied as its size
# only, so it never leaves the server. Replies id, record (or size), id, record, ...
_READ_SCRIPT = """
local key, after, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local budget, cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, total = {}, 0
while #out < 2 * limit do
  local entry = redis.call('XRANGE', key, '(' .. after, '+', 'COUNT', 1)[1]
  if not entry then break end
  local record, fields = '', entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'record' then record = fields[i + 1] end
  end
  local size = string.len(record)
  if size > cap then
    record = size
  elseif total > 0 and total + size > budget then
    break
  else
    total = total + size
  end
  after = entry[1]
  out[#out + 1] = after
  out[#out + 1] = record
end
return out
"""
# The newest entry's id (its record stays on the server), "0-0" for an empty or missing stream.
_NEWEST_SCRIPT = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if newest then return newest[1] end
return '0-0'
"""


class RedisStreamSource:
    """Reads a Redis stream: a plain reader, no consumer group (nothing to acknowledge, nothing
    left behind on the server); it remembers the last entry id it read. ``XREAD`` can be asked for
    a number of entries only, so a read runs a small Lua script that measures the records on the
    server and replies only what the byte budget holds (needs ``EVALSHA``, Redis 6.2 or newer); it
    polls every ``poll_s`` while the stream has nothing new."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = "modelyard:inference",
        start: str = "end",
        timeout_s: float = 2.0,
        poll_s: float = 0.05,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        _check_bounds(max_batch_bytes, max_record_bytes)
        self.url = url
        self.stream = stream
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.max_batch_bytes = max_batch_bytes
        self.max_record_bytes = max_record_bytes
        self.skipped = 0
        self._last: str | None = None if start in ("end", "start") else start
        self._start = start
        self._client: Redis | None = None
        self._scripts: tuple[AsyncScript, AsyncScript] | None = None

    @property
    def position(self) -> str:
        return self._last or self._start

    async def read(self, limit: int, wait_s: float) -> list[bytes]:
        """Up to ``limit`` records; looks again every ``poll_s`` until ``wait_s`` has passed."""
        deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
        while True:
            records, moved = await self._read_now(limit)
            left = deadline - time.monotonic()
            if records or left <= 0:
                return records
            if not moved:  # nothing new (rather than only skipped records): wait a little
                await asyncio.sleep(min(self.poll_s, left))

    async def _read_now(self, limit: int) -> tuple[list[bytes], bool]:
        read, newest = self._connect()
        try:
            if self._last is None:
                self._last = "0-0" if self._start == "start" else _text(await newest(keys=[self.stream]))
            args: list[str | int] = [self._last, limit, self.max_batch_bytes, self.max_record_bytes]
            reply: Any = await read(keys=[self.stream], args=args)
        except BaseException:
            await self.close()
            raise
        if not reply:
            return [], False
        self._last = _text(reply[-2])
        records: list[bytes] = []
        for value in reply[1::2]:
            if isinstance(value, int):  # over max_record_bytes: only its size came
                self.skipped += 1
            elif value:  # an entry with no record field is not the gateway's: passed over
                records.append(value)
        return records, True

    def _connect(self) -> tuple[AsyncScript, AsyncScript]:
        if self._scripts is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = client = Redis.from_url(
                self.url,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._scripts = (client.register_script(_READ_SCRIPT), client.register_script(_NEWEST_SCRIPT))
        return self._scripts

    async def close(self) -> None:
        client, self._client, self._scripts = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NatsJetStreamSource:
    """Reads a JetStream stream through an ephemeral pull consumer that needs no acknowledgements
    (it disappears by itself ``inactive_s`` after the reader stops); it remembers the last stream
    sequence it read and, after a failure, starts a new consumer just past it.

    Each pull asks the server for at most ``max_batch_bytes`` (a pull request's ``max_bytes``);
    when the next message alone is larger, it is pulled by itself (the server's ``max_payload``,
    1 MiB by default, bounds one message), and skipped when over ``max_record_bytes``."""

    name = "nats"

    def __init__(
        self,
        servers: str = "nats://127.0.0.1:4222",
        *,
        subject: str = "modelyard.inference",
        stream: str = "MODELYARD_INFERENCE",
        start: str = "end",
        timeout_s: float = 2.0,
        inactive_s: float = 60.0,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        _check_bounds(max_batch_bytes, max_record_bytes)
        self.servers = servers
        self.subject = subject
        self.stream = stream
        self.timeout_s = timeout_s
        self.inactive_s = inactive_s
        self.max_batch_bytes = max_batch_bytes
        self.max_record_bytes = max_record_bytes
        self.skipped = 0
        self._start = _check_start(start)
        self._next_seq: int | None = int(start) if start.isdigit() else None
        self._nc: NatsClient | None = None
        self._sub: Subscription | None = None
        self._pull_subject = ""  # the consumer's $JS.API.CONSUMER.MSG.NEXT subject
        self._pulls = 0

    @property
    def position(self) -> str:
        return str(self._next_seq) if self._next_seq is not None else self._start

    async def read(self, limit: int, wait_s: float) -> list[bytes]:
        wait = max(0.01, min(wait_s, MAX_WAIT_S))
        try:
            await self._subscribe()
            messages, status = await self._pull({"batch": limit, "max_bytes": self.max_batch_bytes})
            if not messages and status == _TOO_LARGE:  # the next message alone is over the budget
                messages, status = await self._pull({"batch": 1})
            if not messages and status != _TOO_LARGE:  # nothing yet: wait for the next one
                messages, status = await self._pull({"batch": 1, "expires": int(wait * 1e9)}, wait)
        except BaseException:
            await self.close()
            raise
        if messages:
            self._next_seq = messages[-1].metadata.sequence.stream + 1
        kept = [message.data for message in messages if len(message.data) <= self.max_record_bytes]
        self.skipped += len(messages) - len(kept)
        return kept

    async def _pull(self, request: dict[str, int], wait_s: float = 0.0) -> tuple[list[Msg], str]:
        """One pull request (``no_wait`` unless it ``expires``): its messages, and the status that
        ended it (``""`` when the batch was filled)."""
        assert self._nc is not None
        assert self._sub is not None
        self._pulls += 1
        reply = f"{self._sub.subject[:-2]}.{self._pulls}"  # an older pull's late status is told apart
        body = request if "expires" in request else {**request, "no_wait": True}
        await self._nc.publish(self._pull_subject, orjson.dumps(body), reply=reply)
        messages: list[Msg] = []
        deadline = time.monotonic() + wait_s + self.timeout_s
        while len(messages) < request["batch"]:
            message = await self._sub.next_msg(timeout=max(0.001, deadline - time.monotonic()))
            status = message.headers.get("Status") if message.headers else None
            if not status:  # a record (delivered under its own subject, not the reply's)
                messages.append(message)
                continue
            if message.subject != reply or status == "100":  # an older pull's end; a heartbeat
                continue
            description = message.headers.get("Description", "") if message.headers else ""
            if status in ("404", "408") or description.lower() == "batch completed":
                return messages, status
            if description.lower() == _TOO_LARGE:
                return messages, _TOO_LARGE
            raise ConnectionError(f"JetStream pull on {self.stream}: {status} {description}")
        return messages, ""

    async def _subscribe(self) -> None:
        if self._sub is not None:
            return
        from nats.aio.client import Client
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = Client()
        try:
            async with asyncio.timeout(self.timeout_s):
                await nc.connect(
                    servers=[self.servers], connect_timeout=max(1, int(self.timeout_s)),
                    allow_reconnect=False, error_cb=_quiet,
                )  # fmt: skip
            js = nc.jetstream(timeout=self.timeout_s)
            if self._next_seq is None:
                info = await js.stream_info(self.stream)  # NotFoundError: no gateway wrote yet
                self._next_seq = 1 if self._start == "start" else info.state.last_seq + 1
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._next_seq,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=self.inactive_s,
                filter_subject=self.subject,
            )
            consumer = await js.add_consumer(self.stream, config)
            # Room for a full pull and one message over it, whatever the server's max_payload.
            room = self.max_batch_bytes + nc.max_payload + (1 << 20)
            self._sub = await nc.subscribe(nc.new_inbox() + ".*", pending_bytes_limit=room)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer.name}"
        self._nc = nc

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout_s):
                    await nc.close()


_TOO_LARGE = "message size exceeds maxbytes"  # the status of a pull its next message overflows


async def _quiet(exc: Exception) -> None:
    """The client logs every error by default; the analysis reports a failed read itself."""
