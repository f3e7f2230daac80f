"""Per-project API keys for inference at the gateway, as values: how a key looks, how it is
hashed, what is known about it, the limits a key may carry.

A key is ``mdyk_<id>_<secret>``, made and hashed like every secret of ours (``_secrets.py``): ``id``
names it in lists and ``modelyard key revoke``; only the SHA-256 of the whole key is stored, and
only hashes reach the gateways (``RoutingTable.keys``): one SHA-256 per request (about a
microsecond), and the gateway finds the key by its hash without a database call. The ``mdyk_``
prefix tells a gateway key from a control-plane token (``mdy_``, ``access/tokens.py``) at a
glance, and lets secret scanners find one that leaked.

Nothing here imports SQLAlchemy: the rows are read and written in ``routing/keystore.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelyard._secrets import NAME_PATTERN, hash_secret, new_secret
from modelyard.errors import InvalidInput
from modelyard.routing.table import KeyGrant, check_name

__all__ = [
    "MAX_BURST",
    "MAX_RATE_PER_S",
    "PREFIX",
    "ApiKey",
    "check_key_name",
    "check_limits",
    "hash_key",
    "key_from_dict",
    "new_key",
]

PREFIX = "mdyk_"
MAX_RATE_PER_S = 1_000_000.0
MAX_BURST = 10_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKey:
    """What is stored about an API key: never the key itself.

    ``rate_per_s`` None: no rate limit (``burst`` is then 0). Otherwise the key may make ``burst``
    requests at once and ``rate_per_s`` a second after that, across the gateway's workers
    (docs/gateway.md says how closely).
    """

    id: str
    project: str
    name: str
    rate_per_s: float | None
    burst: int
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def grant(self) -> KeyGrant:
        """What a gateway needs of this key (its hash is the key of the table's mapping)."""
        return KeyGrant(self.project, self.rate_per_s, self.burst)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def key_from_dict(data: Mapping[str, Any]) -> ApiKey:
    """The inverse of :meth:`ApiKey.to_dict`; malformed data raises InvalidInput."""
    try:
        rate = data["rate_per_s"]
        revoked = data.get("revoked_at")
        return ApiKey(
            id=str(data["id"]),
            project=str(data["project"]),
            name=str(data["name"]),
            rate_per_s=None if rate is None else float(rate),
            burst=int(data["burst"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            created_by=str(data["created_by"]),
            revoked_at=datetime.fromisoformat(str(revoked)) if revoked else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"malformed API key data: {exc!r}", field="key") from None


def new_key() -> tuple[str, str]:
    """A fresh ``(id, key)``."""
    return new_secret(PREFIX)


def hash_key(key: str | bytes) -> str:
    """The SHA-256 (hex) that is stored and looked up for ``key``."""
    return hash_secret(key)


def check_key_name(name: object) -> str:
    """``name`` if it may name a key; InvalidInput naming ``name`` otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"key name {name!r} must be 1-63 letters, digits, '_', '.', '@' or '-', starting with a "
            "letter or digit",
            field="name",
        )
    return name


def check_limits(project: str, rate_per_s: object, burst: object) -> tuple[float | None, int]:
    """``(rate_per_s, burst)`` checked; InvalidInput naming the field otherwise.

    No rate: no limit, and no burst may be given. A rate without a burst allows one second's worth
    of requests at once (at least one).
    """
    check_name(project, "project")
    if rate_per_s is None:
        if burst is not None:
            raise InvalidInput("a burst needs a rate: give rate_per_s too", field="burst")
        return None, 0
    number = rate_per_s if isinstance(rate_per_s, int | float) and not isinstance(rate_per_s, bool) else None
    # Written as "not (in range)" so that NaN, which fails every comparison, is refused too.
    if number is None or not (0 < number <= MAX_RATE_PER_S):
        raise InvalidInput(
            f"rate_per_s must be a number above 0 and at most {MAX_RATE_PER_S:g}", field="rate_per_s"
        )
    if burst is None:
        return float(number), max(1, math.ceil(number))
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_BURST:
        raise InvalidInput(f"burst must be an integer from 1 to {MAX_BURST}", field="burst")
    return float(number), burst
