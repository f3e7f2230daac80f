"""The token API under ``/api/v1/tokens`` (admins only) and ``/api/v1/whoami`` (anyone known).

POST   /api/v1/tokens        {"name", "role", "expires_in_s"?} -> 201, the record and "token" (once)
GET    /api/v1/tokens        ?include_revoked=true              -> the records (never a token)
DELETE /api/v1/tokens/{id}   an id, or an active token's name   -> the revoked record
GET    /api/v1/whoami                                            -> {"name", "role", "authenticated"}
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.access.policy import TokenAuthorizer
from modelyard.access.store import TokenStore
from modelyard.access.tokens import parse_role
from modelyard.web.access import Role, identity_of
from modelyard.web.http import Handler, guarded_routes, in_thread, json_response, read_model

__all__ = ["PREFIX", "token_routes"]

PREFIX = "/api/v1"
MAX_JSON_BODY = 16 * 1024


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    role: StrictStr
    expires_in_s: StrictInt | None = Field(default=None, ge=1)


class _Endpoints:
    def __init__(self, store: TokenStore, authorizer: TokenAuthorizer) -> None:
        self.store = store
        self.authorizer = authorizer

    async def create(self, request: Request) -> Response:
        body = await read_model(request, TokenCreate, MAX_JSON_BODY)
        role = parse_role(body.role)
        expires = timedelta(seconds=body.expires_in_s) if body.expires_in_s is not None else None
        creator = identity_of(request).name
        info, token = await in_thread(
            self.store.create, body.name, role, created_by=creator, expires_in=expires
        )
        return json_response({**info.to_dict(), "token": token}, 201)

    async def list(self, request: Request) -> Response:
        revoked = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
        found = await in_thread(self.store.list, include_revoked=revoked)
        return json_response([info.to_dict() for info in found])

    async def revoke(self, request: Request) -> Response:
        info = await in_thread(self.store.revoke, request.path_params["token"])
        self.authorizer.forget()
        return json_response(info.to_dict())

    async def whoami(self, request: Request) -> Response:
        identity = identity_of(request)
        return json_response(
            {"name": identity.name, "role": identity.role.label, "authenticated": identity.authenticated}
        )


def token_routes(store: TokenStore, authorizer: TokenAuthorizer) -> list[Route]:
    """Every route of the token API, for the control-plane app to mount."""
    e = _Endpoints(store, authorizer)
    table: list[tuple[str, str, Role, Handler]] = [
        ("POST", f"{PREFIX}/tokens", Role.ADMIN, e.create),
        ("GET", f"{PREFIX}/tokens", Role.ADMIN, e.list),
        ("DELETE", f"{PREFIX}/tokens/{{token}}", Role.ADMIN, e.revoke),
        ("GET", f"{PREFIX}/whoami", Role.VIEWER, e.whoami),
    ]
    return guarded_routes(table)
