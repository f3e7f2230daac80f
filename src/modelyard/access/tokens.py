"""API tokens as values: what is known about one, and its ``mdy_`` form.

A token is ``mdy_<id>_<secret>``, made and hashed like every secret of ours (``_secrets.py``):
only its SHA-256 is stored, and ``id`` finds its row without a scan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from modelyard._secrets import ID_PATTERN, NAME_PATTERN, hash_secret, new_secret
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
    return new_secret(PREFIX)


def token_id(token: str) -> str | None:
    """The id inside a well-formed token; None for anything else."""
    found = _TOKEN.fullmatch(token)
    return found.group(1) if found else None


def hash_token(token: str) -> str:
    """What is stored, and looked up, for ``token``."""
    return hash_secret(token)


def check_token_name(name: str) -> str:
    """``name`` if it may name a token; InvalidInput naming ``name`` otherwise."""
    if ID_PATTERN.fullmatch(
        name
    ):  # `token revoke X` takes an id or a name: one must never look like the other
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
