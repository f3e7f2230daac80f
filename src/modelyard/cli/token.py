"""``modelyard token ...``: API tokens for the control plane (admins only).

Like every command group, it talks to the control plane that ``--control-url`` or
``MODELYARD_CONTROL_URL`` names (with ``MODELYARD_TOKEN``, an admin's token), else to the local
database directly — which is how the first admin token is made, on the control plane's machine,
before anyone has a token (``docs/security.md``). ``create`` prints the token alone on stdout, once.
"""

from __future__ import annotations

import contextlib
import getpass
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, one_line_errors, resolve_control_url
from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    from modelyard.access.client import TokenClient
    from modelyard.access.store import TokenStore

__all__ = ["token_app"]

T = TypeVar("T")

token_app = typer.Typer(
    help="API tokens with roles: viewer, deployer, admin.", no_args_is_help=True, cls=ControlUrlGroup
)
_DURATION = re.compile(r"([1-9][0-9]{0,8})([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@token_app.callback()
def _root() -> None:
    """API tokens for the control plane."""


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise InvalidInput(
            f"--expires {text!r}: use a number and a unit, e.g. 90d, 12h, 30m", field="expires"
        )
    return int(found.group(1)) * _SECONDS[found.group(2)]


@contextlib.contextmanager
def _local_store() -> Iterator[TokenStore]:
    """The token table of the local database (``$MODELYARD_HOME`` / ``MODELYARD_REGISTRY_DB``)."""
    from modelyard.access.store import TokenStore
    from modelyard.control.settings import ControlSettings

    store = TokenStore.open(ControlSettings.from_env())
    try:
        yield store
    finally:
        store.close()


def _either(
    control_url: str | None, remote: Callable[[TokenClient], T], local: Callable[[TokenStore], T]
) -> T:
    """``remote(client)`` against the control plane the URL rule names, else ``local(store)`` on
    the local database; either's errors end the command in one line."""
    url = resolve_control_url(control_url)
    with one_line_errors(url):
        if url:
            from modelyard.access.client import TokenClient

            with TokenClient(url) as client:
                return remote(client)
        with _local_store() as store:
            return local(store)


@token_app.command()
def create(
    name: Annotated[str, typer.Option(help="who or what holds it, e.g. ci or alice")],
    role: Annotated[str, typer.Option(help="viewer, deployer or admin")] = "viewer",
    expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 90d, 12h (default: none)")] = None,
    control_url: ControlUrl = None,
) -> None:
    """Create a token and print it (only this once; only its hash is stored)."""
    url = resolve_control_url(control_url)
    with one_line_errors(url):
        seconds = _seconds(expires)
        if url:
            from modelyard.access.client import TokenClient

            with TokenClient(url) as client:
                made = client.create(name, role, seconds)
            token, token_id = made["token"], made["id"]
        else:
            token, token_id = _create_locally(name, role, seconds)
    typer.echo(f"modelyard: created token {token_id} '{name}' ({role}); it is shown only now", err=True)
    typer.echo(token)


def _create_locally(name: str, role: str, seconds: int | None) -> tuple[str, str]:
    from datetime import timedelta

    from modelyard.access.tokens import parse_role

    expires_in = timedelta(seconds=seconds) if seconds is not None else None
    with _local_store() as store:
        info, token = store.create(
            name, parse_role(role), created_by=f"{getpass.getuser()} (local)", expires_in=expires_in
        )
    return token, info.id


@token_app.command("list")
def list_tokens(
    all_: Annotated[bool, typer.Option("--all", help="revoked tokens too")] = False,
    control_url: ControlUrl = None,
) -> None:
    """List tokens (never the tokens themselves)."""
    rows = _either(
        control_url,
        lambda client: client.list(include_revoked=all_),
        lambda store: [info.to_dict() for info in store.list(include_revoked=all_)],
    )
    for row in rows:
        state = (
            "revoked"
            if row["revoked_at"]
            else f"expires {row['expires_at']}"
            if row["expires_at"]
            else "active"
        )
        typer.echo(f"{row['id']}  {row['name']:<20} {row['role']:<9} {state}  (by {row['created_by']})")


@token_app.command()
def revoke(
    token: Annotated[str, typer.Argument(help="the token's id, or an active token's name")],
    control_url: ControlUrl = None,
) -> None:
    """Revoke a token: it stops working at once here, within seconds on other control planes."""
    row = _either(
        control_url, lambda client: client.revoke(token), lambda store: store.revoke(token).to_dict()
    )
    typer.echo(f"revoked {row['id']} '{row['name']}' ({row['role']})")


@token_app.command()
def whoami(control_url: ControlUrl = None) -> None:
    """Who the control plane takes you for, with $MODELYARD_TOKEN."""
    url = resolve_control_url(control_url)
    if url is None:
        typer.echo("modelyard: `token whoami` asks a control plane: pass --control-url", err=True)
        raise typer.Exit(2)
    from modelyard.access.client import TokenClient

    with one_line_errors(url), TokenClient(url) as client:
        me = client.whoami()
    typer.echo(f"{me['name']} ({me['role']}){'' if me['authenticated'] else ', access control is off'}")
