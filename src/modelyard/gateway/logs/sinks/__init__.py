"""Where inference logs go, named by a URL: :func:`open_sink`.

A JSON-lines file (``files``), a Redis stream (``redis``), a NATS JetStream subject (``nats``). Each
satisfies :class:`~modelyard.gateway.logs.record.LogSink` and ships each record as the JSON of the
:class:`~modelyard.gateway.logs.record.InferenceLog`. The queue clients' libraries are imported inside
``open()``, so importing the gateway costs nothing when logs go to a file. Every network call has
a timeout: a dead server makes ``open``/``write`` raise (the shipper counts it and backs off),
never hang. Neither client retries on its own — retrying is the shipper's job, with back-off.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from modelyard.errors import InvalidInput
from modelyard.gateway.logs.record import LogSink
from modelyard.gateway.logs.sinks.files import DiscardSink, JsonLinesSink
from modelyard.gateway.logs.sinks.nats import NatsJetStreamSink
from modelyard.gateway.logs.sinks.redis import RedisStreamSink

__all__ = ["SINK_URL_FORMATS", "open_sink"]

SINK_URL_FORMATS = (
    "jsonl:///abs/path.jsonl, a file path, redis://host:port/db?stream=NAME&maxlen=N, "
    "nats://host:port?subject=S&stream=NAME or none"
)


def open_sink(url: str) -> LogSink:
    """The sink a ``log_sink`` setting names (not yet connected: :meth:`LogShipper.start` opens it).

    ``jsonl:///abs/path.jsonl`` or a plain path: :class:`JsonLinesSink`;
    ``redis://host:port/db?stream=NAME&maxlen=N`` (or ``rediss://``): a Redis stream;
    ``nats://host:port?subject=S&stream=NAME``: a NATS JetStream subject; ``none``: discard.
    Anything else raises :class:`~modelyard.errors.InvalidInput` naming the field ``log_sink``.
    """
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise InvalidInput(f"log_sink must not be empty; use {SINK_URL_FORMATS}", field="log_sink")
    if text == "none":
        return DiscardSink()
    scheme, separator, _ = text.partition("://")
    if not separator:
        return JsonLinesSink(text)
    scheme = scheme.lower()
    if scheme == "jsonl":
        return JsonLinesSink(_jsonl_path(text))
    if scheme in ("redis", "rediss"):
        return RedisStreamSink.from_url(text)
    if scheme == "nats":
        return NatsJetStreamSink.from_url(text)
    # Name only the scheme: the rest of a URL may hold a password.
    raise InvalidInput(
        f"log_sink scheme {scheme!r} is not supported; use {SINK_URL_FORMATS}", field="log_sink"
    )


def _jsonl_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment or not parts.path.startswith("/"):
        raise InvalidInput(
            "log_sink jsonl URL must be jsonl:///absolute/path.jsonl (three slashes, no host or query)",
            field="log_sink",
        )
    return unquote(parts.path)
