"""Who may call an endpoint: the roles every REST route declares, and the check each one runs.

Every route of the control plane's APIs is declared with the least :class:`Role` it needs
(``guarded_routes`` rows are ``(method, path, role, handler)``). Before the handler runs, the check
asks the app's :class:`Authorizer` who the caller is (from the ``Authorization`` header) and
compares roles. The authorizer is whatever the composing app installed as ``app.state.authorizer``
(``modelyard.access.policy.TokenAuthorizer`` in the control plane); an app without one refuses
every call, so a route can never end up open by being mounted somewhere that forgot the policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from modelyard.errors import Forbidden, ModelyardError

__all__ = ["IDENTITY_KEY", "Authorizer", "Identity", "Role", "acting_user", "authorize", "identity_of"]

IDENTITY_KEY = "modelyard.identity"


class Role(enum.IntEnum):
    """Ordered: each role may do everything the ones below it may."""

    VIEWER = 1  # read models, versions, aliases, routes, deploy status and history
    DEPLOYER = 2  # push, move aliases, change routes, announce replicas, diff/apply/rollback
    ADMIN = 3  # tokens and API keys, deletes, garbage collection

    @property
    def label(self) -> str:
        """The role as the API and the CLI spell it: ``viewer``, ``deployer``, ``admin``."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: a token's name and role. ``authenticated`` is False only for the caller of a
    control plane running without access control (a first run on loopback, before any token)."""

    name: str
    role: Role
    authenticated: bool = True
    token_id: str | None = None


class Authorizer(Protocol):
    """Turns a request's ``Authorization`` header into an :class:`Identity`, or raises
    ``Unauthenticated`` (no or bad credentials where they are required)."""

    async def identify(self, authorization: str | None) -> Identity: ...


async def authorize(request: Request, role: Role) -> Identity:
    """The caller's identity if its role is at least ``role``; ``Unauthenticated`` or ``Forbidden``
    otherwise. Stores the identity on the request for :func:`identity_of`."""
    authorizer: Authorizer | None = getattr(request.app.state, "authorizer", None)
    if authorizer is None:  # fail closed: an app that mounts our routes must install a policy
        raise ModelyardError("this app has no access policy installed; refusing the call")
    identity = await authorizer.identify(request.headers.get("authorization"))
    if identity.role < role:
        raise Forbidden(
            f"'{identity.name}' has the {identity.role.label} role; {request.method} "
            f"{request.url.path} needs {role.label}",
            field="authorization",
        )
    request.scope[IDENTITY_KEY] = identity
    return identity


def identity_of(request: Request) -> Identity:
    """The identity :func:`authorize` established for this request."""
    identity = request.scope.get(IDENTITY_KEY)
    if not isinstance(identity, Identity):
        raise ModelyardError("no identity on this request: the route skipped its access check")
    return identity


def acting_user(request: Request, claimed: str = "") -> str:
    """Who to record as having done this (alias history, deploy history): the token's name. Only a
    caller nobody checked (access control off) is recorded as what the client ``claimed``."""
    identity = identity_of(request)
    return identity.name if identity.authenticated else claimed
