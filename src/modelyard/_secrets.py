"""Bearer secrets, written once: control-plane tokens (``access/tokens.py``, ``mdy_``) and gateway
API keys (``routing/keys.py``, ``mdyk_``) are made, named and hashed the same way.

A secret is ``<prefix><id>_<random>``: ``id`` (12 hex digits) names it in lists and finds its row,
the random part is 32 bytes (URL-safe base64). Only the SHA-256 of the whole secret is stored: a
slow hash (bcrypt, scrypt) protects guessable passwords, but a 256-bit random value cannot be
guessed, so a fast hash is enough and keeps a check to about a microsecond.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["ID_PATTERN", "NAME_PATTERN", "hash_secret", "new_secret"]

ID_PATTERN = re.compile(r"[0-9a-f]{12}")
# What a token or key may be called: a person, a service, a CI job.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}")


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh ``(id, secret)`` whose secret starts with ``prefix``."""
    ident = secrets.token_hex(6)
    return ident, f"{prefix}{ident}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str | bytes) -> str:
    """The SHA-256 (hex) that is stored and looked up for ``secret``."""
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).hexdigest()
