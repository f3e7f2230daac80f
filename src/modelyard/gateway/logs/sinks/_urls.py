"""Reading a queue sink's URL: its query parameters and host, checked, never echoed (it may hold a
password)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from modelyard.errors import InvalidInput

DEFAULT_MAXLEN = 1_000_000  # records kept: Redis trims approximately, JetStream discards the oldest
FIELD = "log_sink"


def query_params(url: str, allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters of ``url``: each at most once, non-empty, and one of ``allowed``."""
    params = parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
    allowed = tuple(allowed)
    for key, values in params.items():
        if key not in allowed:
            raise InvalidInput(
                f"log_sink parameter {key!r} is not supported (allowed: {', '.join(allowed)})", field=FIELD
            )
        if len(values) != 1 or not values[0]:
            raise InvalidInput(f"log_sink parameter {key!r} must be given once, non-empty", field=FIELD)
    return {key: values[0] for key, values in params.items()}


def maxlen_param(params: dict[str, str]) -> int:
    text = params.get("maxlen", str(DEFAULT_MAXLEN))
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"log_sink maxlen must be a positive integer, not {text!r}", field=FIELD)
    return int(text)


def check_host(url: str, example: str) -> None:
    """The URL names a host and a valid port (the message never echoes the URL: it may hold a password)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise InvalidInput(f"log_sink must look like {example} (host and optional port)", field=FIELD)
