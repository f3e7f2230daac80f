"""``modelyard registry ...``: the model registry from the command line.

Every command works on the local registry (SQLite + a folder under ``$MODELYARD_HOME``) unless
``--control-url URL`` or ``MODELYARD_CONTROL_URL`` names a control plane, whose REST API serves the
registry (``cli/control_url.py``: the rule every command group follows). ``--json`` prints the API's
JSON instead of a table.

Only what declares the commands is imported here; each command imports the registry (SQLAlchemy,
httpx, pydantic, rich) when it runs, so that ``modelyard --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelyard.cli import exposure
from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, resolve_control_url
from modelyard.cli.validation_jobs import validation_app
from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from modelyard.registry.api import RegistryAPI
    from modelyard.registry.types import ModelVersion

__all__ = ["registry_app", "registry_error_message", "registry_errors"]


def registry_errors() -> tuple[type[BaseException], ...]:
    """What talking to a registry can raise besides ModelyardError: the server is unreachable or
    misbehaves (httpx), the database is (SQLAlchemy), or a file or socket fails (OSError).

    A function, not a constant, so that importing the CLI imports neither httpx nor SQLAlchemy.
    """
    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    return (httpx.HTTPError, SQLAlchemyError, OSError)


def __getattr__(name: str) -> Any:
    # ``REGISTRY_ERRORS``, the constant registry_errors() replaced, still reads as one.
    if name == "REGISTRY_ERRORS":
        return registry_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def registry_error_message(exc: BaseException, url: str | None = None) -> str:
    """One line for a :func:`registry_errors` error (or a ModelyardError), without the traceback."""
    if isinstance(exc, ModelyardError):
        return f"modelyard: {exc.message}"
    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, httpx.HTTPError):
        return f"modelyard: cannot reach the registry at {url or 'the server'}: {reason}"
    if isinstance(exc, SQLAlchemyError):
        return f"modelyard: registry database error: {reason}"
    return f"modelyard: {reason}"


registry_app = typer.Typer(
    help="The model registry: push, list, show, alias, download, delete, gc.", cls=ControlUrlGroup
)
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
KeyValues = Annotated[list[str] | None, typer.Option(help="k=v, repeatable")]


@registry_app.callback()
def _root() -> None:
    """The model registry."""


registry_app.add_typer(validation_app, name="validation")


@contextlib.contextmanager
def _registry(url: str | None) -> Iterator[RegistryAPI]:
    """The registry to talk to; its errors become one line on stderr and exit code 1."""
    from modelyard.control.settings import ControlSettings
    from modelyard.registry.fetch import open_registry

    url = resolve_control_url(url)
    errors: tuple[type[BaseException], ...] = (ModelyardError, *registry_errors())
    try:
        registry = open_registry(ControlSettings.from_env(), url)
    except errors as exc:
        typer.echo(registry_error_message(exc, url), err=True)
        raise typer.Exit(1) from None
    try:
        yield registry
    except errors as exc:
        typer.echo(registry_error_message(exc, url), err=True)
        raise typer.Exit(1) from None
    finally:
        registry.close()


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {value!r}", param_hint=option)
        found[key] = rest
    return found


def _metrics(values: list[str] | None) -> dict[str, float]:
    try:
        return {key: float(value) for key, value in _pairs(values, "--metric").items()}
    except ValueError:
        raise typer.BadParameter("metric values must be numbers", param_hint="--metric") from None


def _print_json(value: BaseModel | Sequence[BaseModel]) -> None:
    from pydantic import BaseModel

    data: Any = (
        value.model_dump(mode="json")
        if isinstance(value, BaseModel)
        else [item.model_dump(mode="json") for item in value]
    )
    typer.echo(json.dumps(data, indent=2))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], footer: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=footer or None)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console().print(table)


def _show_version(version: ModelVersion) -> None:
    rows: list[tuple[str, object]] = [
        ("ref", version.ref),
        ("aliases", ", ".join(version.aliases)),
        ("file", f"{version.filename} ({version.size} bytes)"),
        ("sha256", version.sha256),
        ("uri", version.artifact_uri),
        ("description", version.description),
        ("user", version.user),
        ("source run", version.source_run),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in version.metrics.items())),
        ("params", ", ".join(f"{k}={v}" for k, v in version.params.items())),
        ("labels", ", ".join(f"{k}={v}" for k, v in version.labels.items())),
        ("package", "yes" if version.manifest else "no"),
        ("created", version.created_at.isoformat(timespec="seconds")),
    ]
    _table(version.ref, ["field", "value"], rows)


@registry_app.command()
def push(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a package or any model file")],
    name: Annotated[
        str | None, typer.Option(help="model name (default: the package's, or the file stem)")
    ] = None,
    description: Annotated[str, typer.Option(help="what this version is")] = "",
    user: Annotated[str, typer.Option(help="who registers it")] = "",
    metric: KeyValues = None,
    param: KeyValues = None,
    label: KeyValues = None,
    source_run: Annotated[str, typer.Option(help="the training run it came from")] = "",
    alias: Annotated[list[str] | None, typer.Option(help="point this alias at the new version")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="explicit version number")] = None,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Upload FILE and register it as a new version."""
    from modelyard.registry.types import NewVersion

    spec = NewVersion(
        version=version,
        description=description,
        user=user,
        source_run=source_run,
        metrics=_metrics(metric),
        params=_pairs(param, "--param"),
        labels=_pairs(label, "--label"),
    )
    with _registry(control_url) as api:
        created = api.push(file, name=name, spec=spec, aliases=alias or [])
    if as_json:
        _print_json(created)
    else:
        typer.echo(f"registered {created.ref} (sha256 {created.sha256[:12]}, {created.size} bytes)")


@registry_app.command("list")
def list_(
    model: Annotated[
        str | None, typer.Argument(help="list this model's versions (default: list models)")
    ] = None,
    search: Annotated[str | None, typer.Option(help="case-insensitive substring filter")] = None,
    page_size: Annotated[int | None, typer.Option(min=1, help="items per page")] = None,
    page_token: Annotated[str | None, typer.Option(help="the token a previous page printed")] = None,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """List models, or one MODEL's versions (newest first), a page at a time."""
    with _registry(control_url) as api:
        if model is None:
            models = api.list_models(search, page_size, page_token)
            if as_json:
                _print_json(models)
                return
            listed = [(m.name, m.latest_version, _aliases(m.aliases), m.description) for m in models.items]
            _table(
                "models", ["name", "latest", "aliases", "description"], listed, _next(models.next_page_token)
            )
            return
        versions = api.list_versions(model, search, page_size, page_token)
    if as_json:
        _print_json(versions)
        return
    rows = [
        (
            v.version,
            ", ".join(v.aliases),
            v.filename,
            v.size,
            v.user,
            v.created_at.isoformat(timespec="seconds"),
        )
        for v in versions.items
    ]
    columns = ["version", "aliases", "file", "bytes", "user", "created"]
    _table(f"{model} versions", columns, rows, _next(versions.next_page_token))


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{alias}->{version}" for alias, version in aliases.items())


def _next(token: str | None) -> str:
    return f"next page: --page-token {token}" if token else ""


@registry_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="name (latest), name/3 or name@alias")],
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show the version REF names."""
    with _registry(control_url) as api:
        version = api.resolve(ref)
        verdicts = api.list_validations(version.name, version.version, limit=5)
    if as_json:
        _print_json(version)
        return
    _show_version(version)
    if verdicts:
        rows = [
            (v.created_at.isoformat(timespec="seconds"), v.outcome, v.baseline, v.dataset, v.rows, v.user)
            for v in verdicts
        ]
        _table("validations (newest first)", ["when", "verdict", "baseline", "data", "rows", "user"], rows)


@registry_app.command()
def alias(
    model: Annotated[str, typer.Argument(help="model name")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. staging, production")],
    version: Annotated[int | None, typer.Argument(help="the version to point at")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="remove the alias instead")] = False,
    user: Annotated[
        str | None, typer.Option(help="who moves it, recorded in the history (default: your OS user name)")
    ] = None,
    expected_revision: Annotated[
        int | None, typer.Option(help="compare-and-set: fail unless the alias is at this revision (0: new)")
    ] = None,
    require_validation: Annotated[
        bool,
        typer.Option(
            "--require-validation",
            help="refuse unless the version's latest `modelyard validate` verdict is a pass",
        ),
    ] = False,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Point ALIAS of MODEL at VERSION (or --delete it)."""
    if delete == (version is not None):
        raise typer.BadParameter("give a VERSION, or --delete", param_hint="VERSION")
    user = _os_user() if user is None else user
    with _registry(control_url) as api:
        if delete:
            api.delete_alias(model, alias_name, user=user, expected_revision=expected_revision)
            typer.echo(f"deleted {model}@{alias_name}")
            return
        assert version is not None
        moved = api.set_alias(
            model,
            alias_name,
            version,
            user=user,
            expected_revision=expected_revision,
            require_validation=require_validation,
        )
    if as_json:
        _print_json(moved)
    else:
        typer.echo(f"{model}@{moved.alias} -> {moved.version} (revision {moved.revision})")


def _os_user() -> str:
    """Who runs the command: the login name (``$LOGNAME``, ``$USER``... then the password database)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. in some containers)
        return "unknown"


@registry_app.command()
def history(
    model: Annotated[str, typer.Argument(help="model name")],
    alias_name: Annotated[str | None, typer.Option("--alias", help="only this alias")] = None,
    page_size: Annotated[int | None, typer.Option(min=1)] = None,
    page_token: Annotated[str | None, typer.Option()] = None,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Who moved which alias of MODEL from which version to which, and when (newest first)."""
    with _registry(control_url) as api:
        events = api.alias_history(model, alias_name, page_size, page_token)
    if as_json:
        _print_json(events)
        return
    rows = [
        (e.at.isoformat(timespec="seconds"), e.alias, e.from_version, e.to_version, e.user)
        for e in events.items
    ]
    _table(
        f"{model} alias history", ["when", "alias", "from", "to", "user"], rows, _next(events.next_page_token)
    )


@registry_app.command()
def download(
    ref: Annotated[str, typer.Argument(help="name (latest), name/3 or name@alias")],
    output: Annotated[
        Path, typer.Option("--output", "-o", file_okay=False, help="folder to write to")
    ] = Path(),
    control_url: ControlUrl = None,
) -> None:
    """Download REF's artifact into a folder (verified against its SHA-256)."""
    with _registry(control_url) as api:
        path = api.fetch(ref, output)
    typer.echo(str(path))


@registry_app.command()
def delete(
    ref: Annotated[str, typer.Argument(help="name/3 (a version number is required)")],
    force: Annotated[bool, typer.Option("--force", help="delete even while deployments use it")] = False,
    control_url: ControlUrl = None,
) -> None:
    """Delete a version; refused while deployments use it, unless --force."""
    from modelyard.registry.refs import parse_ref

    try:
        parsed = parse_ref(ref)
    except ModelyardError as exc:
        raise typer.BadParameter(exc.message, param_hint="REF") from None
    if parsed.version is None:
        raise typer.BadParameter("name the version to delete explicitly, as name/3", param_hint="REF")
    with _registry(control_url) as api:
        api.delete_version(parsed.name, parsed.version, force=force)
    typer.echo(f"deleted {parsed}")


@registry_app.command()
def gc(
    older_than: Annotated[
        int,
        typer.Option("--older-than", min=0, max=10**10, help="only artifacts at least this many seconds old"),
    ] = 3600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be deleted")] = False,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Delete uploaded artifacts that no version references (unfinished or refused registrations)."""
    with _registry(control_url) as api:
        removed = api.collect_garbage(timedelta(seconds=older_than), dry_run=dry_run)
    if as_json:
        _print_json(removed)
        return
    verb = "would delete" if dry_run else "deleted"
    for artifact in removed:
        typer.echo(f"{verb} {artifact.sha256} ({artifact.size} bytes)")
    total = sum(artifact.size for artifact in removed)
    typer.echo(f"{verb} {len(removed)} unreferenced artifact(s), {total} bytes")


@registry_app.command()
def serve(
    host: exposure.Host = None,
    port: Annotated[int | None, typer.Option(help="port; 0 picks a free one (default 8090)")] = None,
    auth: exposure.Auth = None,
    allowed_host: exposure.AllowedHosts = None,
    tls_cert: exposure.TlsCert = None,
    tls_key: exposure.TlsKey = None,
) -> None:
    """Serve the control plane's REST API: the registry, the routing table and the token API."""
    from modelyard.control.app import build_control_app  # the web stack only when serving
    from modelyard.control.server import run_registry_server
    from modelyard.control.settings import ControlSettings

    exposed = exposure.exposure_overrides(host, auth, allowed_host, tls_cert, tls_key)
    run_registry_server(ControlSettings.from_env(port=port, **exposed), build=build_control_app)
