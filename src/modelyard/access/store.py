"""``TokenStore``: API tokens in the control-plane database (synchronous SQLAlchemy Core).

Tokens are created, listed and revoked by admins (``access/rest.py``, ``modelyard token``) and
checked by the policy (``access/policy.py``) on every call it has not seen in the last seconds.
"""

from __future__ import annotations

import builtins
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from modelyard.access import schema as s
from modelyard.access.tokens import TokenInfo, check_token_name, hash_token, new_token, token_id
from modelyard.control.db import EngineStore, as_utc
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.web.access import Role

__all__ = ["MAX_LIFETIME", "TokenStore"]

MAX_LIFETIME = timedelta(days=3650)


def _now() -> datetime:
    return datetime.now(UTC)


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=Role[row.role.upper()],
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        expires_at=None if row.expires_at is None else as_utc(row.expires_at),
        revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
    )


class TokenStore(EngineStore):
    """API tokens over an engine on the control-plane database (already migrated).

    ``TokenStore(registry.engine)`` shares an open registry's engine; :meth:`open` makes its own.
    """

    def create(
        self, name: str, role: Role, *, created_by: str, expires_in: timedelta | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token: its record and the token itself, which is never stored and cannot be
        shown again. A name is unique among the active tokens."""
        check_token_name(name)
        if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
            raise InvalidInput("expires_in must be between 1 second and 10 years", field="expires_in")
        ident, token = new_token()
        now = _now()
        with self._writer.begin() as conn:
            if conn.execute(select(s.tokens.c.id).where(s.tokens.c.name == name, _active(now))).first():
                raise Conflict(f"an active token named '{name}' exists; revoke it first", field="name")
            conn.execute(
                insert(s.tokens).values(
                    id=ident,
                    name=name,
                    role=role.label,
                    token_hash=hash_token(token),
                    created_at=now,
                    created_by=created_by[:200],
                    expires_at=now + expires_in if expires_in is not None else None,
                )
            )
            row = conn.execute(select(s.tokens).where(s.tokens.c.id == ident)).one()
        return _info(row), token

    def list(self, *, include_revoked: bool = False) -> builtins.list[TokenInfo]:
        query = select(s.tokens).order_by(s.tokens.c.created_at, s.tokens.c.id)
        if not include_revoked:
            query = query.where(s.tokens.c.revoked_at.is_(None))
        with self._engine.connect() as conn:
            return [_info(row) for row in conn.execute(query)]

    def revoke(self, id_or_name: str) -> TokenInfo:
        """Revoke the token with that id, or the active one with that name."""
        now = _now()
        with self._writer.begin() as conn:
            found = conn.execute(
                select(s.tokens).where(
                    or_(s.tokens.c.id == id_or_name, (s.tokens.c.name == id_or_name) & _active(now))
                )
            ).first()
            if found is None:
                raise NotFound(f"no token with id or active name '{id_or_name}'", field="token")
            if found.revoked_at is None:
                conn.execute(update(s.tokens).where(s.tokens.c.id == found.id).values(revoked_at=now))
            row = conn.execute(select(s.tokens).where(s.tokens.c.id == found.id)).one()
        return _info(row)

    def verify(self, token: str) -> TokenInfo | None:
        """The active token's record; None when it is malformed, unknown, expired or revoked."""
        ident = token_id(token)
        if ident is None:
            return None
        with self._engine.connect() as conn:
            row = conn.execute(select(s.tokens).where(s.tokens.c.id == ident)).first()
        if row is None or not _same(row.token_hash, hash_token(token)):
            return None
        info = _info(row)
        return info if info.active(_now()) else None

    def any_tokens(self) -> bool:
        """Whether a token was ever created here (revoked ones count: revoking every token must
        not reopen the control plane to anyone)."""
        with self._engine.connect() as conn:
            return bool(conn.execute(select(func.count()).select_from(s.tokens)).scalar())

    def has_admin(self) -> bool:
        """Whether an active admin token exists."""
        query = select(s.tokens.c.id).where(s.tokens.c.role == Role.ADMIN.label, _active(_now()))
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None


def _active(now: datetime) -> Any:
    return s.tokens.c.revoked_at.is_(None) & or_(s.tokens.c.expires_at.is_(None), s.tokens.c.expires_at > now)


def _same(stored: str, computed: str) -> bool:
    return hmac.compare_digest(stored, computed)
