"""Refusing what a web page can make a browser send: cross-site writes (CSRF) and DNS rebinding.

A page on any site can make its visitor's browser send "simple" requests — GET, or POST with a
``text/plain``, form or multipart body — to ``http://127.0.0.1:8090`` without asking anyone, and a
page whose domain re-resolves to 127.0.0.1 reads the answers too. So, for every app it wraps, even
on loopback and even with access control off:

- the ``Host`` header must name this server (loopback names, the address it is bound to, or one of
  ``allowed_hosts``), else 400 — a rebound domain never matches;
- a state-changing method (anything but GET, HEAD, OPTIONS) is refused with 403 when the browser
  says it comes from another origin (``Origin`` that is not this host, or ``Sec-Fetch-Site:
  cross-site``/``same-site``), and with 415 when its body has a type a form can send: bodies must
  be JSON, YAML (deploy files) or ``application/octet-stream`` (uploads) — none of which a browser
  sends cross-site without a CORS preflight, which is never granted (no CORS headers, ever). A
  body with no type at all is accepted (command-line clients): a browser sends one only with an
  ``Origin``, and a foreign ``Origin`` is refused above.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.errors import Forbidden, InvalidInput, ModelyardError, UnsupportedMediaType
from modelyard.web.asgi import header, send_error

__all__ = ["BODY_TYPES", "LOOPBACK_NAMES", "BrowserGuard"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_TYPES = frozenset(
    {"application/json", "application/yaml", "application/x-yaml", "application/octet-stream"}
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


_BRACKETED = re.compile(r"\[([0-9a-f:.]+)\](?::[0-9]{1,5})?")


def _host_name(value: str) -> str:
    """``example.com:8090`` -> ``example.com``; ``[::1]:8090`` -> ``::1`` (lower case); anything
    after a bracketed address but its port makes the whole value the name (so it matches nothing)."""
    value = value.strip().lower()
    if value.startswith("["):
        found = _BRACKETED.fullmatch(value)
        return found.group(1) if found else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class BrowserGuard:
    """ASGI middleware; ``bind_host`` is the address the server listens on."""

    def __init__(self, app: ASGIApp, bind_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        extra = {_host_name(name) for name in allowed_hosts}
        # Bound to every interface with no names configured: any Host may be right, so none is
        # checked (off loopback, access control is on anyway; see access/policy.py).
        self.any_host = "*" in extra or (bind_host in _WILDCARDS and not extra)
        self.hosts = frozenset({*LOOPBACK_NAMES, _host_name(bind_host), *extra})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self._check(scope)
            except ModelyardError as exc:
                await send_error(send, exc)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        headers = scope["headers"]
        host = header(headers, b"host")
        if not self.any_host and (host is None or _host_name(host) not in self.hosts):
            raise InvalidInput(f"Host {host!r} is not a name of this server", field="host")
        if scope["method"] in _SAFE_METHODS:
            return
        origin = header(headers, b"origin")
        if (
            origin is not None
            and origin != "null"
            and urlsplit(origin).netloc.lower() != (host or "").lower()
        ):
            raise Forbidden(f"cross-origin {scope['method']} from {origin} refused", field="origin")
        if origin == "null" or header(headers, b"sec-fetch-site") in ("cross-site", "same-site"):
            raise Forbidden("cross-site request refused", field="origin")
        media = (header(headers, b"content-type") or "").split(";", 1)[0].strip().lower()
        if media and media not in BODY_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {media!r} is not accepted: send application/json (uploads: "
                "application/octet-stream, deploy files: application/yaml)",
                field="content-type",
            )
