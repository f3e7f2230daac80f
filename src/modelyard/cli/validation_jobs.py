"""``modelyard registry validation ...``: a model's validation setup, and the jobs that run it.

``set`` stores what a control plane validates by itself when a version is pushed or an alias moves
(the dataset, the policy, the baseline alias, the triggers, the alias a pass moves); ``show`` and
``clear`` read and forget it; ``jobs`` lists the model's jobs, ``job`` shows one with its log, and
``run`` queues one by hand. Local database or ``--control-url``, as every ``registry`` command; on
the local database, a control plane running on that database (``modelyard up``) runs the jobs.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, one_line_errors, resolve_control_url

if TYPE_CHECKING:
    from modelyard.validation.job_store import JobStore
    from modelyard.validation.jobs_client import JobsClient
    from modelyard.validation.setup import JobView, ValidationSetup

__all__ = ["validation_app"]

validation_app = typer.Typer(
    help="Validation with nobody in the loop: a model's setup, and the jobs that run it.",
    cls=ControlUrlGroup,
)
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@validation_app.callback()
def _root() -> None:
    """A model's validation setup, and the jobs a control plane runs from it."""


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@contextlib.contextmanager
def _jobs(control_url: str | None) -> Iterator[JobStore | JobsClient]:
    """The control plane's jobs API, or the local database's; errors are one line and exit code 2."""
    url = resolve_control_url(control_url)
    with one_line_errors(url):
        if url is not None:
            from modelyard.validation.jobs_client import JobsClient

            api: JobStore | JobsClient = JobsClient(url, user=_os_user())
        else:
            from modelyard.control.settings import ControlSettings
            from modelyard.validation.job_store import JobStore

            api = JobStore.open(ControlSettings.from_env())
        try:
            yield api
        finally:
            api.close()


def _dataset(data: str) -> str:
    """A URL as given; a local path made absolute (the control plane reads it, from its own folder)."""
    if "://" in data:
        return data
    path = Path(data).expanduser().resolve()
    if not path.is_file():
        typer.echo(f"modelyard: note: {path} is not a file here; the control plane must find it", err=True)
    return str(path)


@validation_app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="the registered model")],
    data: Annotated[str, typer.Option("--data", help="the rows: an absolute path or a URL (s3://...)")],
    policy: Annotated[Path | None, typer.Option("--policy", help="the gates, a YAML file")] = None,
    labels: Annotated[str | None, typer.Option("--labels", metavar="COL", help="the label column")] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="the output scored against the labels")
    ] = None,
    baseline: Annotated[str, typer.Option("--baseline", help="the alias to compare with")] = "production",
    on: Annotated[
        list[str] | None,
        typer.Option("--on", help="push | alias:NAME | manual (repeatable; default: push)"),
    ] = None,
    promote_to: Annotated[
        str | None, typer.Option("--promote-to", help="move this alias to a version that passes")
    ] = None,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Validate NAME's new versions by themselves: on every push, or when an alias moves."""
    from pydantic import ValidationError

    from modelyard.errors import InvalidInput
    from modelyard.validation.policy import load_policy
    from modelyard.validation.setup import SetupRequest

    triggers = [t for t in (on or ["push"]) if t != "manual"]
    with _jobs(control_url) as api:
        gates = load_policy(policy).model_dump(mode="json") if policy is not None else None
        fields = {"dataset": _dataset(data), "labels": labels, "output": output, "policy": gates,
                  "baseline": baseline, "triggers": triggers, "promote_to": promote_to}  # fmt: skip
        try:
            request = SetupRequest.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
        setup = api.put_setup(name, request, _os_user())
    _show_setup(setup, as_json)


@validation_app.command()
def show(
    name: Annotated[str, typer.Argument(help="the registered model")],
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show NAME's validation setup."""
    with _jobs(control_url) as api:
        setup = api.get_setup(name)
    _show_setup(setup, as_json)


@validation_app.command()
def clear(
    name: Annotated[str, typer.Argument(help="the registered model")], control_url: ControlUrl = None
) -> None:
    """Forget NAME's validation setup (its jobs stay in the history)."""
    with _jobs(control_url) as api:
        api.clear_setup(name)
    typer.echo(f"{name}: no validation setup any more")


@validation_app.command()
def jobs(
    name: Annotated[str, typer.Argument(help="the registered model")],
    limit: Annotated[int, typer.Option(min=1, max=200, help="the newest this many")] = 20,
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """List NAME's validation jobs, newest first."""
    with _jobs(control_url) as api:
        found = api.list_jobs(name, limit)
    if as_json:
        _print_json([job.model_dump(mode="json") for job in found])
        return
    rows = [
        (j.id, j.version, j.trigger, j.status, _when(j), j.requested_by, j.promotion or "", j.reason)
        for j in found
    ]
    _table(
        f"{name} validation jobs",
        ["job", "version", "trigger", "status", "when", "by", "promotion", "reason"],
        rows,
    )


@validation_app.command()
def job(
    job_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="the job")],
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show one job and its log."""
    with _jobs(control_url) as api:
        found = api.get_job(job_id)
    if as_json:
        _print_json(found.model_dump(mode="json"))
        return
    typer.echo(f"job {found.id}: {found.name}/{found.version}, {found.trigger}, {found.status}")
    for label, value in (
        ("reason", found.reason),
        ("promotion", found.promotion),
        ("by", found.requested_by),
    ):
        if value:
            typer.echo(f"{label}: {value}")
    typer.echo(found.log or "")


@validation_app.command()
def run(
    name: Annotated[str, typer.Argument(help="the registered model")],
    version: Annotated[int, typer.Argument(min=1, help="the version to validate")],
    control_url: ControlUrl = None,
    as_json: AsJson = False,
) -> None:
    """Queue a validation job for NAME VERSION now (the control plane runs it)."""
    with _jobs(control_url) as api:
        queued = api.run_now(name, version, _os_user())
    if as_json:
        _print_json(queued.model_dump(mode="json"))
        return
    typer.echo(
        f"queued job {queued.id} for {name}/{version}: `modelyard registry validation job {queued.id}`"
    )


def _show_setup(setup: ValidationSetup, as_json: bool) -> None:
    if as_json:
        _print_json(setup.model_dump(mode="json"))
        return
    gates = ", ".join(
        f"{k}={v}" for k, v in setup.policy.items() if v is not None and k.startswith(("min_", "max_"))
    )
    rows: list[tuple[str, object]] = [
        ("dataset", setup.dataset),
        ("labels", setup.labels or ""),
        ("baseline", setup.baseline),
        ("triggers", ", ".join(setup.triggers) or "manual only"),
        ("promote to", setup.promote_to or "(record the verdict only)"),
        ("gates", gates),
        (
            "updated",
            f"{setup.updated_at:%Y-%m-%d %H:%M:%S} by {setup.updated_by}" if setup.updated_at else "",
        ),
    ]
    _table(f"{setup.name} validation", ["field", "value"], rows)


def _when(job: JobView) -> str:
    moment = job.finished_at or job.started_at or job.created_at
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console().print(table)
