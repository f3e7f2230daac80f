"""A NATS JetStream sink for inference logs (the client library is imported inside ``open()``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.client import JetStreamContext

from modelyard.gateway.logs.record import InferenceLog, encode_record
from modelyard.gateway.logs.sinks._urls import DEFAULT_MAXLEN, FIELD, check_host, maxlen_param, query_params

logger = logging.getLogger(__name__)

DEFAULT_NATS_SUBJECT = "modelyard.inference"
DEFAULT_NATS_STREAM = "MODELYARD_INFERENCE"
_SUBJECT = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")  # no wildcards: we publish to it
_STREAM = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")  # JetStream forbids '.', '*', '>', spaces, slashes


class NatsJetStreamSink:
    """Publishes each record to a JetStream subject and waits for the stream's acknowledgement.

    ``open()`` creates the stream (capturing just ``subject``, keeping at most ``maxlen`` messages)
    when it does not exist yet, and checks that an existing stream captures ``subject``. A batch is
    published concurrently, at most ``max_in_flight`` unacknowledged messages at a time.
    """

    name = "nats"

    def __init__(
        self,
        servers: str = "nats://127.0.0.1:4222",
        *,
        subject: str = DEFAULT_NATS_SUBJECT,
        stream: str = DEFAULT_NATS_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        timeout_s: float = 2.0,
        max_in_flight: int = 256,
    ) -> None:
        self.servers = servers
        self.subject = subject
        self.stream = stream
        self.maxlen = maxlen
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None

    @classmethod
    def from_url(cls, url: str) -> NatsJetStreamSink:
        """``nats://[user:password@]host[:port][?subject=S&stream=NAME&maxlen=N]``."""
        example = "nats://host:port?subject=S&stream=NAME"
        check_host(url, example)
        parts = urlsplit(url)
        if parts.path not in ("", "/"):
            raise InvalidInput(f"log_sink NATS URL takes no path: {example}", field=FIELD)
        params = query_params(url, ("subject", "stream", "maxlen"))
        subject = params.get("subject", DEFAULT_NATS_SUBJECT)
        stream = params.get("stream", DEFAULT_NATS_STREAM)
        if not _SUBJECT.match(subject):
            raise InvalidInput(
                f"log_sink NATS subject {subject!r} must be dot-separated tokens of letters, digits, "
                "'_' or '-' (no wildcards)",
                field=FIELD,
            )
        if not _STREAM.match(stream):
            raise InvalidInput(
                f"log_sink JetStream stream {stream!r} must be letters, digits, '_' or '-'", field=FIELD
            )
        servers = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        return cls(servers, subject=subject, stream=stream, maxlen=maxlen_param(params))

    async def open(self) -> None:
        """Connect, then create the stream if missing (or check that it captures the subject)."""
        from nats.aio.client import Client

        await self.close()
        # Our own Client object, not nats.connect(): a connect that times out must still be closed.
        nc = Client()
        try:
            async with asyncio.timeout(self.timeout_s):
                await nc.connect(
                    servers=[self.servers],
                    connect_timeout=max(1, math.ceil(self.timeout_s)),
                    # Once connected, reconnect forever in the background; writes meanwhile time out.
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=_nats_error,
                    disconnected_cb=_nats_disconnected,
                    reconnected_cb=_nats_reconnected,
                )
            js = nc.jetstream(timeout=self.timeout_s)
            await self._ensure_stream(js)
        except BaseException:
            await _close_quietly(nc, self.timeout_s)
            raise
        self._nc, self._js = nc, js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            # Two workers may race here: adding a stream with an identical config is idempotent.
            await js.add_stream(name=self.stream, subjects=[self.subject], max_msgs=self.maxlen)
            return
        subjects = info.config.subjects or []
        if not any(_subject_matches(pattern, self.subject) for pattern in subjects):
            raise RuntimeError(
                f"JetStream stream {self.stream!r} captures {subjects}, not the log subject {self.subject!r}"
            )

    async def write(self, records: list[InferenceLog]) -> None:
        """Publish every record and wait for all acknowledgements; raise if any is missing."""
        js = self._js
        if js is None:
            raise RuntimeError("NatsJetStreamSink is not open")
        limit = asyncio.Semaphore(self.max_in_flight)

        async def publish(payload: bytes) -> None:
            async with limit:
                # Expecting our stream makes a subject captured by another stream fail, not vanish.
                await js.publish(self.subject, payload, timeout=self.timeout_s, stream=self.stream)

        results = await asyncio.gather(
            *(publish(encode_record(record)) for record in records), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise RuntimeError(
                f"{len(errors)} of {len(records)} records not acknowledged by JetStream: {errors[0]!r}"
            ) from errors[0]

    async def close(self) -> None:
        """Flush what is pending and disconnect."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close_quietly(nc, self.timeout_s)


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a trailing ``>`` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(wanted) == len(tokens)


async def _close_quietly(nc: NatsClient, timeout_s: float = 2.0) -> None:
    """Close ``nc`` (flushing pending messages) within ``timeout_s``, whatever its state."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await nc.close()


# The client's default callbacks log every failed reconnect attempt as an error; the shipper
# already reports an outage (rate-limited) through its failed writes, so keep these quiet.
async def _nats_error(exc: Exception) -> None:
    logger.debug("NATS error: %r", exc)


async def _nats_disconnected() -> None:
    logger.info("NATS log sink disconnected; reconnecting in the background")


async def _nats_reconnected() -> None:
    logger.info("NATS log sink reconnected")
