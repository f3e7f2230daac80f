"""``modelyard deploy ...``: declarative deployments from a YAML file kept in Git (docs/deploy.md).

``validate`` and ``render`` work offline, and so does ``diff --against OLD``; ``diff``, ``apply``,
``status``, ``history``, ``rollback`` and the rollout commands (``promote``, ``abort``, ``pause``,
``resume``, ``retry``) talk to a control plane (``modelyard up``), which owns the replicas and the history:
``--control-url URL`` or ``MODELYARD_CONTROL_URL``. Unlike ``route`` and ``registry`` there is no
local fallback (``cli/control_url.py``): the local backend's replicas are children of the process
that supervises them and end with it, so an apply run inside this command would stop what it
started when the command exits. Without a URL the commands say so and exit 2.

Only what declares the commands is imported here; each command imports what it runs (httpx, the
deploy spec and its pydantic models) so that ``modelyard --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from modelyard.cli.control_url import ControlUrlGroup, fail, require_control_url
from modelyard.errors import ErrorKind, InvalidInput, ModelyardError

if TYPE_CHECKING:
    from modelyard.deploy.client import DeployClient
    from modelyard.deploy.spec import DeployFile
    from modelyard.rollout.client import RolloutClient

__all__ = ["deploy_app"]

T = TypeVar("T")

deploy_app = typer.Typer(
    help="Declarative deployments: validate, diff, apply, status, history, rollback, render; "
    "a rollout's promote, abort, pause, resume, retry.",
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
ModelName = Annotated[
    str, typer.Argument(metavar="PROJECT/MODEL", help="the rolled-out model, e.g. mail/spam")
]
Reason = Annotated[str, typer.Option(help="why, for the history")]


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


@contextlib.contextmanager
def _rollouts(url: str, user: str = "") -> Iterator[RolloutClient]:
    """A client of the control plane's rollouts; its errors become one line on stderr and exit 2."""
    import httpx

    from modelyard.rollout.client import RolloutClient

    try:
        with RolloutClient(url, user=user) as client:
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
    """The last applied file, every replica (state, URL, restarts), each version's replica gate (the
    new replica watched, the time left, its figures; or the last verdict) and each model's latest
    rollout: its step, the time left, each gate's value against its threshold."""
    url = require_control_url(control_url, "deploy status")
    with _control_plane(url) as client:
        found = client.status()
    found["rollouts"] = _latest_rollouts(url)
    found["shadow"] = _shadow_pairs(url, {(r["project"], r["model"]) for r in found["replicas"]})
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
    for line in _gate_lines(found.get("replica_gates") or [], "replica gates (one new replica first):"):
        typer.echo(line)
    if found["rollouts"]:
        typer.echo("rollouts:")
    for rollout in found["rollouts"]:
        for line in _rollout_lines(rollout):
            typer.echo(line)
    if found["shadow"]:
        typer.echo("shadow analysis (candidate answers compared with the baseline's, same requests):")
    for pair in found["shadow"]:
        agreement = "-" if pair["agreement"] is None else f"{pair['agreement']:.3f}"
        typer.echo(f"  {pair['route']} {pair['candidate']} vs {pair['baseline']}: agreement {agreement} "
                   f"on {pair['compared']} compared, {pair['verdict']}")  # fmt: skip


def _gate_lines(gates: list[dict[str, Any]], heading: str = "", indent: str = "  ") -> list[str]:
    """Replica gates as status and history print them: a watch in progress, or its verdict."""
    lines = [heading] if heading and gates else []
    for gate in gates:
        head = (f"{indent}{gate['project']}/{gate['model']} {gate['version']}: replica {gate['replica']}"
                f" against {gate['siblings']} old")  # fmt: skip
        if gate["state"] == "watching":
            lines.append(f"{head}: watching, {gate['time_left_s'] or 0:.0f}s left: {gate['detail']}")
        else:
            lines.append(f"{head}: {gate['state']} at {gate['read_at']}: {gate['detail']}")
    return lines


def _unless_no_rollouts(url: str, read: Callable[[RolloutClient], list[T]]) -> list[T]:
    """``read`` of the control plane's rollouts ([] from one that runs none: no deploy target)."""
    with _rollouts(url) as client:
        try:
            return read(client)
        except ModelyardError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            return []


def _shadow_pairs(url: str, routes: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each (baseline, candidate) pair the online analysis compares on the deployed routes."""
    pairs: list[dict[str, Any]] = []
    with _rollouts(url) as client:
        for project, model in sorted(routes):
            try:
                found = client.analysis(project, model)
            except ModelyardError:  # no logged answers yet, or no analysis on this control plane
                continue
            pairs += [{**pair, "route": f"{project}/{model}"} for pair in found.get("pairs", [])]
    return pairs


def _latest_rollouts(url: str) -> list[dict[str, Any]]:
    """Each model's newest rollout (every active one among them, however many rollouts ran since)."""
    return _unless_no_rollouts(url, lambda client: client.latest())


def _rollout_lines(rollout: dict[str, Any]) -> list[str]:
    """A rollout as ``deploy status`` prints it: where it is, then each gate now."""
    head = (
        f"  #{rollout['id']} {rollout['project']}/{rollout['model']}: {rollout['candidate']} from "
        f"{rollout['baseline']} ({rollout['spec']['strategy']}), {rollout['state']}"
    )
    steps, step = len(rollout["steps"]), rollout["step"]
    if rollout["state"] not in ("running", "paused"):
        return [f"{head}: {rollout['reason']}"]
    where = f"step {step + 1}/{steps}: {rollout['at']}" if step < steps else rollout["at"]
    lines = [f"{head}, {where}, {_time_left(rollout)}"]
    reading = rollout["reading"]
    if reading is None:
        return [*lines, f"    evidence: {rollout['evidence']}; gates not read yet"]
    lines.append(
        f"    evidence: {reading['count']} requests, {reading['needed']} needed ({reading['outcome']})"
    )
    for gate in reading["gates"]:
        value = "no data" if gate["value"] is None else f"{gate['value']:.4g}"
        sign = "<=" if gate["bound"] == "max" else ">="
        outcome = f"{gate['outcome']} ({gate['note']})" if gate.get("note") else gate["outcome"]
        lines.append(f"    {gate['name']:<11} {value:>8} {sign} {gate['threshold']:<8g} {outcome}")
    return lines


def _time_left(rollout: dict[str, Any]) -> str:
    left, grace = rollout["time_left_s"] or 0.0, rollout.get("grace_left_s") or 0.0
    if rollout["state"] == "paused":
        return "paused"
    if left > 0:
        return f"{left:.0f}s left"
    return f"waiting for evidence, {grace:.0f}s more at most" if grace > 0 else "deciding"


def _rollout_events(url: str, limit: int) -> list[tuple[str, str]]:
    """The newest ``limit`` rollout transitions, of every rollout, as ``(time, line)`` for the
    history (read page after page: a long rollout or many of them hide none)."""
    found = _unless_no_rollouts(url, lambda client: _transitions(client, limit))
    return [(event["at"], _event_line(event)) for event in found]


def _event_line(event: dict[str, Any]) -> str:
    return (f"  rollout #{event['rollout_id']} {event['project']}/{event['model']} {event['candidate']} "
            f"{event['event']} by {event['actor']} at {event['at']}: {event['reason']}"
            f"{_event_figures(event['figures'])}")  # fmt: skip


def _transitions(client: RolloutClient, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` transitions (a ``window`` event is bookkeeping, not one)."""
    found: list[dict[str, Any]] = []
    before: int | None = None
    while len(found) < limit:
        page = client.events(limit=500, before=before)
        found += [event for event in page["events"] if event["event"] != "window"]
        before = page["next"]
        if before is None:
            break
    return found[:limit]


def _event_figures(figures: dict[str, Any]) -> str:
    """The figures a decision was made on, in brief: `` [250 requests; error_rate 0.2, ...]``."""
    if "count" not in figures:
        return ""
    gates = ", ".join(
        f"{g['name']} {'no data' if g['value'] is None else format(g['value'], '.4g')}"
        for g in figures.get("gates", [])
    )
    return f" [{figures['count']} requests in {figures.get('elapsed_s', 0):g}s; {gates}]"


@deploy_app.command()
def history(
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    as_json: AsJson = False,
    control_url: ControlUrl = None,
) -> None:
    """Every apply (who, when, from what, how it ended, the replica gates it passed through with
    their figures) and every rollout transition (who or the controller, why), newest first.
    ``--json``: the applies only (``status --json`` has rollouts)."""
    url = require_control_url(control_url, "deploy history")
    with _control_plane(url) as client:
        found = client.history(limit)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    lines: list[tuple[str, str]] = []
    for record in found:
        summary = record["plan"].get("summary") or ""
        text = (f"#{record['id']} {record['created_at']} {record['user'] or '?'} {record['status']:8} "
                f"{record['source']} {summary} {record['message']}")  # fmt: skip
        gates = _gate_lines(record["plan"].get("replica_gates") or [], indent="    replica_gate ")
        lines.append((record["created_at"], "\n".join([text.rstrip(), *gates])))
    lines += _rollout_events(url, limit)
    for _, line in sorted(lines, key=lambda item: item[0], reverse=True)[:limit]:
        typer.echo(line)


def _act(route: str, action: str, reason: str, control_url: str | None) -> None:
    url = require_control_url(control_url, f"deploy {action}")
    project, sep, model = route.partition("/")
    if not sep or not project or not model or "/" in model:
        raise typer.BadParameter(f"expected PROJECT/MODEL, got {route!r}", param_hint="PROJECT/MODEL")
    with _rollouts(url, user=getpass.getuser()) as client:
        rollout = client.act(project, model, action, reason)
    for line in _rollout_lines(rollout):
        typer.echo(line)


@deploy_app.command()
def promote(route: ModelName, reason: Reason = "", control_url: ControlUrl = None) -> None:
    """Skip a rollout's remaining steps: all traffic to the candidate now."""
    _act(route, "promote", reason, control_url)


@deploy_app.command()
def abort(route: ModelName, reason: Reason = "", control_url: ControlUrl = None) -> None:
    """End a rollout: traffic back to the baseline now; the candidate stays, at weight 0."""
    _act(route, "abort", reason, control_url)


@deploy_app.command()
def pause(route: ModelName, reason: Reason = "", control_url: ControlUrl = None) -> None:
    """Hold a rollout at its step's traffic (a failing gate still rolls it back)."""
    _act(route, "pause", reason, control_url)


@deploy_app.command()
def resume(route: ModelName, reason: Reason = "", control_url: ControlUrl = None) -> None:
    """Go on with a paused or halted rollout: its current step starts over."""
    _act(route, "resume", reason, control_url)


@deploy_app.command()
def retry(route: ModelName, reason: Reason = "", control_url: ControlUrl = None) -> None:
    """Start a rolled-back or aborted rollout again from its first step, as the last applied file has it."""
    _act(route, "retry", reason, control_url)


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
