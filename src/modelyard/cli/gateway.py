"""``modelyard gateway serve``: run the gateway (several worker processes on one port)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.group import Group
from modelyard.errors import InvalidInput, ModelyardError

__all__ = ["gateway_app"]

gateway_app = typer.Typer(
    help="The gateway: routes /projects/{p}/models/{m} and its versions to replicas.", cls=Group
)


@gateway_app.callback()
def _root() -> None:
    """The gateway."""


@gateway_app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port; 0 picks a free one (default 8000)")] = None,
    admin_host: Annotated[
        str | None, typer.Option(help="address of the admin listener (default 127.0.0.1)")
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(help="serve /metrics and /-/routing on this port (0 picks one; default: nowhere)"),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", metavar="FILE", help="serve HTTPS: the certificate (PEM)")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per core)")] = None,
    log_sink: Annotated[
        str | None,
        typer.Option(
            envvar="MODELYARD_GATEWAY_LOG_SINK",
            help="inference logs: a .jsonl path, redis://h:p?stream=S, nats://h:p?subject=S, or none",
        ),
    ] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="larger request bodies get 413")] = None,
    retries: Annotated[int | None, typer.Option(help="other replicas tried after a failure")] = None,
    refresh_interval: Annotated[
        float | None, typer.Option("--refresh-interval", help="seconds between routing-table checks")
    ] = None,
    idle_poll_us: Annotated[
        int | None,
        typer.Option(
            help="with one request in flight, poll this many µs before sleeping (default 200; 0 = off)"
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    routes: Annotated[
        Path | None,
        typer.Option(
            "--routes",
            metavar="PATH",
            help="read the routing table from this JSON/YAML file or folder (watched), not the database",
        ),
    ] = None,
) -> None:
    """Serve the gateway; routes come from the control-plane database (see `modelyard route`),
    or from a file with --routes. /metrics and /-/routing name replica URLs: they are served only
    on the admin listener (--admin-port)."""
    from pydantic import ValidationError

    from modelyard.gateway.logs import open_sink
    from modelyard.gateway.settings import GatewaySettings
    from modelyard.gateway.workers import run_gateway

    overrides: dict[str, object] = {
        "host": host, "port": port, "workers": workers, "log_sink": log_sink,
        "max_body_bytes": max_body_bytes, "retries": retries, "refresh_interval_s": refresh_interval,
        "idle_poll_us": idle_poll_us, "log_level": log_level, "routes_file": routes,
        "admin_host": admin_host, "admin_port": admin_port, "tls_cert": tls_cert, "tls_key": tls_key,
    }  # fmt: skip
    try:
        if (tls_cert is None) != (tls_key is None):
            raise InvalidInput("--tls-cert and --tls-key go together", field="tls_cert")
        settings = GatewaySettings.from_env(None, **overrides)
        open_sink(settings.resolved_log_sink())  # a malformed sink URL: one line now, not per worker
        if routes is not None:
            _check_routes(routes)
        if settings.tls_cert is not None and settings.tls_key is not None:
            _check_tls(settings.tls_cert, settings.tls_key)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        typer.echo(f"modelyard: invalid setting {field}: {first['msg']}", err=True)
        raise typer.Exit(2) from None
    except ModelyardError as exc:
        typer.echo(f"modelyard: {exc.message}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_gateway(settings))


def _check_tls(cert: Path, key: Path) -> None:
    """Load the certificate once before any worker starts: a missing or mismatched file is one
    line and exit 2, not a worker that fails to start."""
    from modelyard.gateway.tls import server_context

    try:
        server_context(cert, key)
    except InvalidInput as exc:
        flag = "--tls-key" if exc.field == "tls_key" else "--tls-cert"
        raise InvalidInput(f"{flag}: {exc.message}", field=exc.field) from None


def _check_routes(path: Path) -> None:
    """Read ``--routes`` once before any worker starts: a wrong path or a malformed file is one
    line and exit 2 now (once running, a bad edit keeps the last good table instead)."""
    from modelyard.routing.route_file import RouteFile

    if not path.exists():
        raise InvalidInput(f"--routes: {path}: no such file or folder", field="routes")
    try:
        RouteFile(path).load()
    except InvalidInput as exc:
        raise InvalidInput(f"--routes: {exc.message}", field="routes") from None
