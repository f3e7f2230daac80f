"""Opaque keyset page tokens: the last row's sort key plus a fingerprint of the query it belongs to.

Keyset pages (``WHERE key > :last ORDER BY key LIMIT n``) cost the same on page 1 and page 1000,
and rows inserted while a client pages through never shift or repeat the rows it has yet to see.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from modelyard.errors import InvalidInput

__all__ = ["decode_token", "encode_token", "page_size"]

_MAX_KEY = 2**31 - 1  # keys are INTEGER ids and versions


def _fingerprint(query: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(query, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def encode_token(key: Any, query: dict[str, Any]) -> str:
    raw = orjson.dumps({"k": key, "q": _fingerprint(query)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, query: dict[str, Any], key_type: type[int] | type[str]) -> Any:
    """The sort key a token carries, or None for the first page; tokens of another query are refused.

    ``key_type`` is the type the listing's key has: a token carrying anything else is refused too.
    """
    if not token:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, fingerprint = data["k"], data["q"]
    except (ValueError, TypeError, KeyError):
        raise InvalidInput("invalid page token", field="page_token") from None
    if fingerprint != _fingerprint(query):
        raise InvalidInput("the page token belongs to a different query", field="page_token")
    valid = isinstance(key, key_type) and not isinstance(key, bool)
    if (
        not valid
        or (isinstance(key, int) and not 0 <= key <= _MAX_KEY)
        or (isinstance(key, str) and "\x00" in key)
    ):
        raise InvalidInput("invalid page token", field="page_token")
    return key


def page_size(requested: int | None, default: int, maximum: int) -> int:
    if requested is None:
        return default
    if requested < 1:
        raise InvalidInput(f"page size must be at least 1, got {requested}", field="page_size")
    return min(requested, maximum)
