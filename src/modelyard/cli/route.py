"""``modelyard route ...``: the gateway's routing table from the command line.

Every command changes the control-plane database directly (``$MODELYARD_HOME`` /
``MODELYARD_REGISTRY_DB``) unless ``--control-url URL`` or ``MODELYARD_CONTROL_URL`` names a
control-plane server (``cli/control_url.py``: the rule every command group follows). Gateways pick a
change up within a second, without a restart. Errors print one line on stderr and exit with code 2.

Only what declares the commands is imported here; each command imports the routing table (SQLAlchemy,
httpx, rich) when it runs, so that ``modelyard --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, one_line_errors, resolve_control_url

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.routing.api import RoutesAPI
    from modelyard.routing.table import ModelRoute

__all__ = ["open_routes", "route_app"]

route_app = typer.Typer(
    help="The gateway's routing table: weights, mirrors, replicas, options.",
    no_args_is_help=True,
    cls=ControlUrlGroup,
)

RouteName = Annotated[str, typer.Argument(metavar="PROJECT/MODEL", help="e.g. mail/spam")]
Version = Annotated[str, typer.Argument(help="version name, e.g. v3")]


@route_app.callback()
def _root() -> None:
    """The gateway's routing table."""


@contextlib.contextmanager
def open_routes(url: str | None) -> Iterator[RoutesAPI]:
    """The routing table to change (``modelyard route`` and ``modelyard key``); its errors become
    one line on stderr and exit code 2."""
    url = resolve_control_url(url)
    with one_line_errors(url):
        api = _open(url)
    with one_line_errors(url):
        try:
            yield api
        finally:
            api.close()


def _open(url: str | None) -> RoutesAPI:
    """The control plane at ``url`` over HTTP, or without one the local database."""
    if url:
        from modelyard.routing.client import RouteClient

        return RouteClient(url)
    from modelyard.control.settings import ControlSettings
    from modelyard.routing.store import RouteStore

    return RouteStore.open(ControlSettings.from_env())


def _split(name: str) -> tuple[str, str]:
    project, sep, model = name.partition("/")
    if not sep or not project or not model or "/" in model:
        raise typer.BadParameter(f"expected PROJECT/MODEL, got {name!r}", param_hint="PROJECT/MODEL")
    return project, model


def _weights(pairs: Sequence[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for pair in pairs:
        version, sep, value = pair.partition("=")
        if not sep or not version or not value.strip().isdigit() or version in weights:
            raise typer.BadParameter(
                f"expected VERSION=WEIGHT (a whole number, each version once), got {pair!r}",
                param_hint="WEIGHTS",
            )
        weights[version] = int(value)
    return weights


def _share(weight: int, total: int) -> str:
    return f"{100 * weight / total:.1f}%" if total else "-"


def _summary(route: ModelRoute) -> str:
    """One line: each version's weight and share, then the mirrors."""
    total = sum(version.weight for version in route.versions)
    parts = [f"{v.version}={v.weight} ({_share(v.weight, total)})" for v in route.versions]
    text = f"{route.project}/{route.model}: {', '.join(parts) or 'no versions'}"
    mirrors = [f"{v.version} ({v.mirror_fraction:.0%})" for v in route.versions if v.mirror]
    return f"{text}; mirror {', '.join(mirrors)}" if mirrors else text


def _print_route(console: Console, route: ModelRoute) -> None:
    from rich.table import Table

    total = sum(version.weight for version in route.versions)
    caption = (
        f"timeout {route.timeout_s:g}s, log payload {route.log_payload}, log sample {route.log_sample:.0%}"
    )
    table = Table(title=f"{route.project}/{route.model}", caption=caption)
    for column in ("version", "weight", "share", "mirror", "target", "replicas"):
        table.add_column(column)
    for v in route.versions:
        mirror = f"{v.mirror_fraction:.0%}" if v.mirror else ""
        share = _share(v.weight, total)
        table.add_row(v.version, str(v.weight), share, mirror, v.target, "\n".join(v.replicas) or "-")
    console.print(table)


@route_app.command("set")
def set_(
    route: RouteName,
    weights: Annotated[list[str], typer.Argument(metavar="VERSION=WEIGHT...", help="e.g. v1=90 v2=10")],
    keep_others: Annotated[
        bool, typer.Option("--keep-others", help="leave unnamed versions' weights as they are (default: 0)")
    ] = False,
    control_url: ControlUrl = None,
) -> None:
    """Split the model's traffic between versions by weight (creates the route if needed)."""
    project, model = _split(route)
    parsed = _weights(weights)
    with open_routes(control_url) as api:
        changed = api.set_weights(project, model, parsed, replace=not keep_others)
    typer.echo(_summary(changed))


@route_app.command()
def mirror(
    route: RouteName,
    version: Version,
    fraction: Annotated[float, typer.Option(help="share of requests copied, 0 < f <= 1")] = 1.0,
    control_url: ControlUrl = None,
) -> None:
    """Copy requests to VERSION too; its answers are logged, never returned."""
    names = _split(route)
    with open_routes(control_url) as api:
        changed = api.set_mirror(*names, version, fraction)
    typer.echo(_summary(changed))


@route_app.command()
def unmirror(route: RouteName, version: Version, control_url: ControlUrl = None) -> None:
    """Stop mirroring requests to VERSION."""
    names = _split(route)
    with open_routes(control_url) as api:
        changed = api.clear_mirror(*names, version)
    typer.echo(_summary(changed))


def _print_replicas(route: ModelRoute, version: str) -> None:
    found = route.version(version)
    urls = ", ".join(found.replicas) if found is not None and found.replicas else "none"
    typer.echo(f"{route.project}/{route.model} {version}: replicas {urls}")


@route_app.command()
def replicas(
    route: RouteName,
    version: Version,
    urls: Annotated[list[str] | None, typer.Argument(metavar="URL...", help="http://host:port")] = None,
    control_url: ControlUrl = None,
) -> None:
    """Make URL... the replicas of VERSION (none given: remove them all)."""
    names = _split(route)
    with open_routes(control_url) as api:
        changed = api.set_replicas(*names, version, urls or [])
    _print_replicas(changed, version)


@route_app.command("add-replica")
def add_replica(route: RouteName, version: Version, url: str, control_url: ControlUrl = None) -> None:
    """Add one replica (http://host:port) to VERSION."""
    names = _split(route)
    with open_routes(control_url) as api:
        changed = api.add_replica(*names, version, url)
    _print_replicas(changed, version)


@route_app.command("remove-replica")
def remove_replica(route: RouteName, version: Version, url: str, control_url: ControlUrl = None) -> None:
    """Remove one replica from VERSION."""
    names = _split(route)
    with open_routes(control_url) as api:
        changed = api.remove_replica(*names, version, url)
    _print_replicas(changed, version)


@route_app.command()
def options(
    route: RouteName,
    timeout: Annotated[float | None, typer.Option(help="seconds a replica may take")] = None,
    log_payload: Annotated[
        str | None, typer.Option("--log-payload", help="full | hash | none: what inference logs keep")
    ] = None,
    log_sample: Annotated[
        float | None, typer.Option("--log-sample", help="share of requests logged, 0..1")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option(help="VERSION=NAME: the model's name on that version's replicas")
    ] = None,
    control_url: ControlUrl = None,
) -> None:
    """Change the route's timeout, inference-log settings or per-version target names."""
    project, model = _split(route)
    targets = None
    if target:
        pairs = [item.partition("=") for item in target]
        if any(not sep or not version for version, sep, _ in pairs):
            raise typer.BadParameter("expected VERSION=NAME", param_hint="--target")
        targets = {version: name for version, _, name in pairs}
    with open_routes(control_url) as api:
        changed = api.set_options(
            project, model, timeout_s=timeout, log_payload=log_payload, log_sample=log_sample, target=targets
        )
    from rich.console import Console

    _print_route(Console(), changed)


@route_app.command()
def show(
    route: Annotated[
        str | None, typer.Argument(metavar="[PROJECT/MODEL]", help="one route (default: all)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    control_url: ControlUrl = None,
) -> None:
    """Show one route, or every route: versions, weights and shares, mirrors, replicas."""
    names = _split(route) if route is not None else None
    with open_routes(control_url) as api:
        found = [api.get(*names)] if names is not None else api.list()
    if as_json:
        from modelyard.routing.table import route_to_dict

        data = route_to_dict(found[0]) if names is not None else [route_to_dict(r) for r in found]
        typer.echo(json.dumps(data, indent=2))
        return
    if not found:
        typer.echo("no routes")
    from rich.console import Console

    console = Console()
    for item in found:
        _print_route(console, item)


@route_app.command()
def delete(
    route: RouteName,
    version: Annotated[str | None, typer.Option(help="remove only this version")] = None,
    control_url: ControlUrl = None,
) -> None:
    """Delete the route, or with --version only one of its versions."""
    project, model = _split(route)
    with open_routes(control_url) as api:
        if version is None:
            api.delete(project, model)
            typer.echo(f"deleted {project}/{model}")
            return
        changed = api.remove_version(project, model, version)
    typer.echo(f"removed {version}: {_summary(changed)}")


@route_app.command()
def endpoints(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    control_url: ControlUrl = None,
) -> None:
    """Replicas that announced themselves (`modelyard serve --announce`): readiness, last heartbeat."""
    with open_routes(control_url) as api:
        found = api.endpoints()
    if as_json:
        from modelyard.routing.rest import endpoint_to_dict

        typer.echo(json.dumps([endpoint_to_dict(endpoint) for endpoint in found], indent=2))
        return
    if not found:
        typer.echo("no announced endpoints")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("route", "version", "url", "ready", "last heartbeat", "expires")
    for item in found:
        table.add_row(
            f"{item.project}/{item.model}", item.version, item.url, "yes" if item.ready else "no",
            item.heartbeat_at.strftime("%H:%M:%S"), item.expires_at.strftime("%H:%M:%S"),
        )  # fmt: skip
    Console().print(table)
