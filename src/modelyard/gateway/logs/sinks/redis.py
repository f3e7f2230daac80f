"""A Redis Streams sink for inference logs (the client library is imported inside ``open()``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from redis.asyncio import Redis

from modelyard.gateway.logs.record import InferenceLog, encode_record
from modelyard.gateway.logs.sinks._urls import DEFAULT_MAXLEN, FIELD, check_host, maxlen_param, query_params

logger = logging.getLogger(__name__)

DEFAULT_REDIS_STREAM = "modelyard:inference"


class RedisStreamSink:
    """Appends each record to a Redis stream with ``XADD <stream> MAXLEN ~ <maxlen> * record <json>``.

    One pipeline (one round trip, no transaction) per batch; approximate trimming keeps the stream
    near ``maxlen`` entries at almost no cost to Redis.
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = DEFAULT_REDIS_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = url  # the connection URL, without our own query parameters
        self.stream = stream
        self.maxlen = maxlen
        self.timeout_s = timeout_s
        self._client: Redis | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisStreamSink:
        """``redis://[user:password@]host[:port][/db][?stream=NAME&maxlen=N]`` (or ``rediss://``)."""
        example = "redis://host:port/db?stream=NAME&maxlen=N"
        check_host(url, example)
        parts = urlsplit(url)
        if parts.path not in ("", "/") and not parts.path[1:].isdigit():
            raise InvalidInput(f"log_sink Redis database must be a number: {example}", field=FIELD)
        params = query_params(url, ("stream", "maxlen"))
        connection = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return cls(connection, stream=params.get("stream", DEFAULT_REDIS_STREAM), maxlen=maxlen_param(params))

    async def open(self) -> None:
        """Connect and check the server answers (PING)."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        await self.close()
        client = Redis.from_url(
            self.url,
            socket_connect_timeout=self.timeout_s,
            socket_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def write(self, records: list[InferenceLog]) -> None:
        """XADD every record in one pipelined round trip."""
        if self._client is None:
            raise RuntimeError("RedisStreamSink is not open")
        async with self._client.pipeline(transaction=False) as pipe:
            for record in records:
                record_json = encode_record(record)
                pipe.xadd(self.stream, {"record": record_json}, maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    async def close(self) -> None:
        """Disconnect (the connection pool is closed with the client)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
