"""``modelyard key ...``: per-project API keys for inference at the gateway.

Like ``modelyard route`` (and through the same helper), every command works on the local
control-plane database unless ``--control-url URL`` or ``MODELYARD_CONTROL_URL`` names a control
plane, where it needs an admin's ``MODELYARD_TOKEN``. ``create`` prints the key alone on stdout,
once: only its hash is stored. Gateways pick a new or revoked key up within a second. A project
with keys, even revoked ones only, takes requests only with a key; ``forget`` opens it again.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Annotated

import typer

from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, resolve_control_url
from modelyard.cli.route import open_routes

if TYPE_CHECKING:
    from modelyard.routing.keys import ApiKey

__all__ = ["key_app"]

key_app = typer.Typer(
    help="Per-project API keys for inference at the gateway, with rate limits.",
    no_args_is_help=True,
    cls=ControlUrlGroup,
)


@key_app.callback()
def _root() -> None:
    """Per-project API keys for inference at the gateway."""


def _limit(key: ApiKey) -> str:
    return "no rate limit" if key.rate_per_s is None else f"{key.rate_per_s:g}/s, burst {key.burst}"


@key_app.command()
def create(
    project: Annotated[str, typer.Option(help="the project the key opens, e.g. mail")],
    name: Annotated[str, typer.Option(help="who or what holds it, e.g. web-frontend")],
    rate: Annotated[
        float | None, typer.Option(help="requests a second the key may make (default: no limit)")
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="requests it may make at once (default: one second's worth)")
    ] = None,
    control_url: ControlUrl = None,
) -> None:
    """Create a key and print it, only this once.

    From then on the project's models answer only requests that send one of its keys
    (Authorization: Bearer KEY)."""
    url = resolve_control_url(control_url)
    creator = getpass.getuser() if url else f"{getpass.getuser()} (local)"
    with open_routes(url) as api:
        record, key = api.create_key(project, name, rate, burst, created_by=creator)
    typer.echo(
        f"modelyard: created key {record.id} '{name}' for project {project} ({_limit(record)}); "
        "it is shown only now",
        err=True,
    )
    typer.echo(key)


@key_app.command("list")
def list_keys(
    project: Annotated[str | None, typer.Option(help="only this project's keys")] = None,
    all_: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of lines")] = False,
    control_url: ControlUrl = None,
) -> None:
    """List keys (never the keys themselves)."""
    with open_routes(resolve_control_url(control_url)) as api:
        found = api.list_keys(project, include_revoked=all_)
    if as_json:
        typer.echo(json.dumps([record.to_dict() for record in found], indent=2))
        return
    if not found:
        typer.echo("no API keys")
    for record in found:
        state = "revoked" if record.revoked_at is not None else "active"
        typer.echo(
            f"{record.id}  {record.project:<16} {record.name:<20} {state:<8} {_limit(record)}  "
            f"(by {record.created_by})"
        )


@key_app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="the key's id (modelyard key list)")],
    control_url: ControlUrl = None,
) -> None:
    """Revoke a key: gateways refuse it within a second.

    The project stays closed to requests without a key, even when this was its last key
    (`modelyard key forget` opens it again)."""
    with open_routes(resolve_control_url(control_url)) as api:
        record = api.revoke_key(key_id)
    typer.echo(f"revoked {record.id} '{record.name}' of project {record.project}")


@key_app.command()
def forget(
    project: Annotated[str, typer.Option(help="the project to open again")],
    control_url: ControlUrl = None,
) -> None:
    """Forget a project's revoked keys: its models answer requests without a key again.

    Refused while the project has an active key (revoke those first)."""
    with open_routes(resolve_control_url(control_url)) as api:
        count = api.forget_keys(project)
    typer.echo(f"forgot {count} revoked key(s) of project {project}: it takes requests without a key")
