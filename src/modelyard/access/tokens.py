"""API tokens as values: how one looks, how it is hashed, what is known about it.

A token is ``mdy_<id>_<secret>``: ``id`` (12 hex digits) finds its row without a scan, ``secret``
is 32 random bytes (URL-safe base64). Only the SHA-256 of the whole token is stored. A slow hash
(bcrypt, scrypt) protects guessable passwords; a 256-bit random secret cannot be guessed, so a fast
hash is enough and keeps a check to microseconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from modelyard.errors import InvalidInput
from modelyard.web.access import Role

__all__ = [
    "NAME_PATTERN",
    "TokenInfo",
    "check_token_name",
    "hash_token",
    "new_token",
    "parse_role",
    "token_id",
]

PREFIX = "mdy_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}")
_ID = re.compile(r"[0-9a-f]{12}")
_TOKEN = re.compile(r"mdy_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is stored about a token: never the token itself."""

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def new_token() -> tuple[str, str]:
    """A fresh ``(id, token)``."""
    ident = secrets.token_hex(6)
    return ident, f"{PREFIX}{ident}_{secrets.token_urlsafe(32)}"


def token_id(token: str) -> str | None:
    """The id inside a well-formed token; None for anything else."""
    found = _TOKEN.fullmatch(token)
    return found.group(1) if found else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_name(name: str) -> str:
    """``name`` if it may name a token; InvalidInput naming ``name`` otherwise."""
    if _ID.fullmatch(name):  # `token revoke X` takes an id or a name: one must never look like the other
        raise InvalidInput(
            f"token name {name!r} looks like a token id (12 hex digits): choose another", field="name"
        )
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"token name {name!r} must be 1-63 letters, digits, '_', '.', '@' or '-', starting with "
            "a letter or digit",
            field="name",
        )
    return name


def parse_role(text: str) -> Role:
    """``viewer``, ``deployer`` or ``admin``; InvalidInput naming ``role`` otherwise."""
    try:
        return Role[text.strip().upper()]
    except KeyError:
        raise InvalidInput(f"unknown role {text!r}: use viewer, deployer or admin", field="role") from None
