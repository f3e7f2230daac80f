"""``modelyard deploy ...``: declarative deployments from a YAML file kept in Git (docs/deploy.md).

``validate`` and ``render`` work offline, and so does ``diff --against OLD``; ``diff``, ``apply``,
``status``, ``history`` and ``rollback`` talk to a control plane (``modelyard up``), which owns the
replicas and the history: ``--control-url URL`` or ``MODELYARD_CONTROL_URL``. Unlike ``route`` and
``registry`` there is no local fallback (``cli/control_url.py``): the local backend's replicas are
children of the process that supervises them and end with it, so an apply run inside this command
would stop what it started when the command exits. Without a URL the commands say so and exit 2.

Only what declares the commands is imported here; each command imports what it runs (httpx, the
deploy spec and its pydantic models) so that ``modelyard --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelyard.cli.control_url import ControlUrlGroup, fail, require_control_url
from modelyard.errors import InvalidInput, ModelyardError

if TYPE_CHECKING:
    from modelyard.deploy.client import DeployClient
    from modelyard.deploy.spec import DeployFile

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    help="Declarative deployments: validate, diff, apply, status, history, rollback, render.",
    cls=ControlUrlGroup,
)

File = Annotated[Path, typer.Argument(help="the deploy file (YAML)")]
ControlUrl = Annotated[
    str | None,
    typer.Option(
        "--control-url",
        metavar="URL",
        show_default=False,
        help="the control plane (modelyard up); default: $MODELYARD_CONTROL_URL",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


@deploy_app.callback()
def _root() -> None:
    """Declarative deployments."""


@contextlib.contextmanager
def _control_plane(url: str, user: str = "") -> Iterator[DeployClient]:
    """A client of the control plane at ``url``; its errors become one line on stderr and exit 2."""
    import httpx

    from modelyard.deploy.client import DeployClient

    try:
        with DeployClient(url, user=user) as client:
            yield client
    except (ModelyardError, httpx.HTTPError) as exc:
        fail(exc, url)


def _load(path: Path) -> DeployFile:
    from modelyard.deploy.file import read_deploy_file

    try:
        return read_deploy_file(path)
    except (ModelyardError, OSError) as exc:
        fail(exc, None)


def _text(path: Path) -> str:
    """The file's text, refused here (with its line numbers, or over the size limit, read no
    further than that) before anything is sent."""
    from modelyard.deploy.file import load_deploy_file, read_deploy_text

    try:
        text = read_deploy_text(path)
        load_deploy_file(text, str(path))
    except (ModelyardError, OSError) as exc:
        fail(exc, None)
    return text


@deploy_app.command()
def validate(path: File) -> None:
    """Check a deploy file; errors name the line and the field."""
    loaded = _load(path)
    versions = sum(len(d.versions) for d in loaded.deployments)
    typer.echo(f"{path}: ok ({len(loaded.deployments)} deployments, {versions} versions)")


@deploy_app.command("diff")
def diff_(
    path: File,
    against: Annotated[
        Path | None, typer.Option(help="compare with this file instead of what is applied")
    ] = None,
    control_url: ControlUrl = None,
) -> None:
    """What apply would do, per project/model/version: ADD, UPDATE (field by field), DELETE, RETAIN."""
    if against is not None:
        from modelyard.deploy.diff import diff, render_plan

        typer.echo(render_plan(diff(_load(path), _load(against))), nl=False)
        return
    url = require_control_url(control_url, "deploy diff")
    text = _text(path)
    with _control_plane(url) as client:
        plan = client.diff(text, str(path))["plan"]
    typer.echo(plan, nl=False)


def _print_outcome(outcome: dict[str, Any]) -> None:
    for line in outcome["log"]:
        typer.echo(line)
    record = outcome["apply"]
    if outcome["ok"]:
        typer.echo(f"apply #{record['id']}: done ({outcome['summary']})")
        return
    typer.echo(f"apply #{record['id']}: FAILED: {outcome['error']}", err=True)
    raise typer.Exit(1)


@deploy_app.command()
def apply(path: File, control_url: ControlUrl = None) -> None:
    """Carry the file out: new replicas first, traffic next, removals last; stop at the first failure."""
    url = require_control_url(control_url, "deploy apply")
    text = _text(path)
    with _control_plane(url, user=getpass.getuser()) as client:
        outcome = client.apply(text, str(path))
    _print_outcome(outcome)


@deploy_app.command()
def rollback(apply_id: Annotated[int, typer.Argument(help="the apply to go back to (see history)")],
             control_url: ControlUrl = None) -> None:  # fmt: skip
    """Apply an earlier apply's file again (recorded as a new apply)."""
    url = require_control_url(control_url, "deploy rollback")
    with _control_plane(url, user=getpass.getuser()) as client:
        outcome = client.rollback(apply_id)
    _print_outcome(outcome)


@deploy_app.command()
def status(as_json: AsJson = False, control_url: ControlUrl = None) -> None:
    """The last applied file and every replica: state, URL, restarts."""
    url = require_control_url(control_url, "deploy status")
    with _control_plane(url) as client:
        found = client.status()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    current = found["current"]
    typer.echo(
        f"applied: #{current['id']} by {current['user'] or '?'} at {current['finished_at']}"
        if current
        else "applied: nothing yet"
    )
    for replica in found["replicas"]:
        where = replica["url"] or "-"
        typer.echo(f"  {replica['project']}/{replica['model']} {replica['version']} #{replica['replica']}: "
                   f"{replica['state']} {where} (restarts {replica['restarts']})")  # fmt: skip


@deploy_app.command()
def history(
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    as_json: AsJson = False,
    control_url: ControlUrl = None,
) -> None:
    """Every apply: who, when, from what, and how it ended."""
    url = require_control_url(control_url, "deploy history")
    with _control_plane(url) as client:
        found = client.history(limit)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for record in found:
        summary = record["plan"].get("summary") or ""
        typer.echo(f"#{record['id']} {record['created_at']} {record['user'] or '?'} {record['status']:8} "
                   f"{record['source']} {summary} {record['message']}".rstrip())  # fmt: skip


@deploy_app.command()
def render(
    path: File,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write here (default: stdout)")
    ] = None,
    namespace: Annotated[str, typer.Option(help="the Kubernetes namespace")] = "default",
    image: Annotated[list[str] | None, typer.Option(help="version=image for versions without one")] = None,
) -> None:
    """Kubernetes manifests (Deployments, Services, HPAs, ConfigMaps) for GitOps tools."""
    from modelyard.deploy.targets.kubernetes.manifests import render as render_objects
    from modelyard.deploy.targets.kubernetes.manifests import to_yaml

    images = dict(item.split("=", 1) for item in image or [] if "=" in item)
    loaded = _load(path)
    try:
        objects = render_objects(loaded, namespace=namespace, image_for=_image_chooser(images, loaded))
    except ModelyardError as exc:
        fail(exc, None)
    text = to_yaml(objects)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {len(objects)} objects to {output}")


def _image_chooser(images: dict[str, str], loaded: DeployFile) -> Any:
    """``--image`` by ``project/model/version`` or by bare version name, else the spec's own image."""
    names: dict[int, tuple[str, str]] = {}
    for deployment in loaded.deployments:
        for version in deployment.versions:
            full = f"{deployment.project}/{deployment.model}/{version.version}"
            names[id(version.spec)] = (full, version.version)

    def choose(spec: Any) -> str:
        full, short = names.get(id(spec), ("", ""))
        found = spec.image or images.get(full) or images.get(short)
        if not found:
            raise InvalidInput(
                f"{full or 'a version'} has no image: give --image {full}=IMAGE or spec.image", field="image"
            )
        return str(found)

    return choose
