"""The control plane's access policy: who the caller is, from the token it presents.

``TokenAuthorizer`` is the ``Authorizer`` that ``web/access.py`` asks on every call. A token is
looked up in the database once and then remembered for :data:`CACHE_S` seconds, so a busy client
costs one query every few seconds; a revocation through this control plane forgets at once, one
made by another process takes effect within :data:`CACHE_S`.

Whether calls without a token are allowed (``ControlSettings.auth``): ``on`` never; ``auto`` (the
default) only while the control plane listens on loopback, checks ``Host`` headers (no
``allowed_hosts: ["*"]``) and no token was ever created here — a
first run on a laptop works out of the box, and creating the first token switches access control
on for good. Such an anonymous caller is an admin who is not ``authenticated``: what it records as
"who" is what the client says, because nobody is checked.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from datetime import UTC, datetime

from modelyard.access.store import TokenStore
from modelyard.access.tokens import TokenInfo, hash_token
from modelyard.control.settings import ControlSettings
from modelyard.errors import Unauthenticated
from modelyard.web.access import Identity, Role
from modelyard.web.http import in_thread

__all__ = ["ANONYMOUS", "CACHE_S", "TokenAuthorizer", "exposure_problem", "is_loopback"]

CACHE_S = 5.0
_MAX_CACHED = 4096
ANONYMOUS = Identity("anonymous", Role.ADMIN, authenticated=False)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenAuthorizer:
    """Identities from the tokens in ``store``, under ``settings.auth``."""

    def __init__(
        self, store: TokenStore, settings: ControlSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.settings = settings
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._required_until = 0.0  # "a token exists" is also cached, once true it stays true
        # Open only where nobody but this machine's own users can call: loopback, with the Host
        # check on (with "*", a domain re-resolved to 127.0.0.1 would reach an open admin API).
        unchecked_hosts = "*" in settings.allowed_hosts
        self._required = settings.auth == "on" or not is_loopback(settings.host) or unchecked_hosts

    async def identify(self, authorization: str | None) -> Identity:
        token = _bearer(authorization)
        if token is None:
            if await self.required():
                raise Unauthenticated(
                    "this control plane needs a token: set MODELYARD_TOKEN (an admin creates one with "
                    "`modelyard token create --name NAME --role viewer|deployer|admin`)",
                    field="authorization",
                )
            return ANONYMOUS
        identity = await self._lookup(token)
        if identity is None:
            raise Unauthenticated(
                "the token is not valid: unknown, expired or revoked", field="authorization"
            )
        return identity

    async def required(self) -> bool:
        """Whether a call must present a token (see the module's docstring)."""
        if self._required:
            return True
        now = self._clock()
        if now >= self._required_until:
            self._required = await in_thread(self.store.any_tokens)
            self._required_until = now + 1.0
        return self._required

    def forget(self) -> None:
        """Drop every remembered token (after a revocation here)."""
        self._cache.clear()

    async def _lookup(self, token: str) -> Identity | None:
        digest = hash_token(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        info = await in_thread(self.store.verify, token)
        identity = _identity(info) if info is not None else None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()  # crude, and bounded: a flood of made-up tokens cannot grow memory
        keep = CACHE_S
        if info is not None and info.expires_at is not None:  # never past the token's own expiry
            keep = min(keep, (info.expires_at - datetime.now(UTC)).total_seconds())
        self._cache[digest] = (now + keep, identity)
        if identity is not None:
            self._required = True
        return identity


def _identity(info: TokenInfo) -> Identity:
    return Identity(info.name, info.role, token_id=info.id)


def _bearer(authorization: str | None) -> str | None:
    if not authorization or not authorization.strip():
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'", field="authorization")
    return value.strip()


def exposure_problem(settings: ControlSettings, store: TokenStore) -> str | None:
    """Why the control plane must not start on ``settings.host``: off loopback it needs access
    control, and so an admin token to manage it with. None when it may start."""
    if is_loopback(settings.host) or store.has_admin():
        return None
    return (
        f"refusing to listen on {settings.host} without access control: anyone who can reach it could "
        "push and run code. Create the first admin token on this machine with `modelyard token "
        "create --name NAME --role admin` (no --control-url: it writes to this control plane's "
        "database and prints the token once), then start again; clients send it as MODELYARD_TOKEN"
    )
