"""``modelyard validate CANDIDATE --baseline REF --data FILE``: a candidate against a baseline, offline.

Both are registry references (``spam@staging``, ``spam/7``), fetched and verified like ``modelyard
serve`` does, or model files (``.modelyard``, ``.onnx``, ``.joblib``, ``file.py:Class``). Both run
in-process on every row of the data; the policy's gates decide, and the exit code says what:

    0  pass: every gate passed
    1  fail: a gate failed
    3  inconclusive: no gate failed, but one could not decide (too few rows, no labels, ...)
    2  no verdict: a usage error, unreadable data or policy, a model that does not load, a
       registry that cannot be reached

When the candidate is a registry version, the verdict is recorded on it (``--no-record`` not to),
where ``registry show`` lists it and ``registry alias ... --require-validation`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from modelyard.cli.control_url import ControlUrl, fail, one_line_errors, resolve_control_url
from modelyard.cli.registry import _os_user as os_user
from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.registry.api import RegistryAPI
    from modelyard.validation.data import Dataset
    from modelyard.validation.offline import Report, Subject
    from modelyard.validation.policy import Policy

__all__ = ["EXIT_CODES", "validate"]

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}
# How the command itself ends (an exit code, a usage error): never an unexpected error.
_ENDINGS = (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException)

_Candidate = Annotated[str, typer.Argument(help="the version to judge: name@alias, name/3, or a model file")]
_Baseline = Annotated[str, typer.Option("--baseline", help="what it must answer like (same forms)")]
_Data = Annotated[
    Path, typer.Option("--data", help="rows: .npz, .csv, .parquet, .jsonl of requests or an inference log")
]
_Labels = Annotated[
    str | None, typer.Option("--labels", metavar="COL", help="the label column: score both versions")
]
_Output = Annotated[
    str | None, typer.Option("--output", help="the output scored against the labels (default: guessed)")
]
_PolicyFile = Annotated[Path | None, typer.Option("--policy", help="the gates, a YAML file")]
_Json = Annotated[bool, typer.Option("--json", help="print the report as JSON")]
_Html = Annotated[Path | None, typer.Option("--html", help="also write a self-contained HTML report")]
_BatchSize = Annotated[int, typer.Option("--batch-size", min=1, max=1 << 20, help="rows per call")]
_Record = Annotated[
    bool, typer.Option("--record/--no-record", help="record the verdict on a registry candidate")
]
_AllowSame = Annotated[
    bool, typer.Option("--allow-same", help="compare even when both are the same artifact")
]


def validate(
    candidate: _Candidate,
    baseline: _Baseline,
    data: _Data,
    labels: _Labels = None,
    output: _Output = None,
    policy: _PolicyFile = None,
    as_json: _Json = False,
    html: _Html = None,
    batch_size: _BatchSize = 1024,
    record: _Record = True,
    allow_same: _AllowSame = False,
    control_url: ControlUrl = None,
) -> None:
    """Run CANDIDATE and --baseline on the same --data, compare their answers, and gate them.

    Exit code: 0 pass, 1 fail, 3 inconclusive, 2 no verdict (bad usage or input)."""
    url = resolve_control_url(control_url)
    with _no_traceback(url), contextlib.ExitStack() as held:
        _check_writable(html)  # before the run: a report that cannot be written is lost
        gates, dataset = _inputs(policy, data, labels)
        api = held.enter_context(_registry(url)) if any(_is_ref(r) for r in (candidate, baseline)) else None
        cand, base = _subject(candidate, api), _subject(baseline, api)
        _refuse_same(cand, base, allow_same)
        report = _run(cand, base, dataset, gates, batch_size=batch_size, output=output, quiet=as_json)
        _show(report, as_json, html)  # then the verdict: a registry that fails loses no report
        if api is not None and record and cand.registry is not None:
            _record(api, report, cand.registry)
    raise typer.Exit(EXIT_CODES[report.outcome.value])


@contextlib.contextmanager
def _no_traceback(url: str | None) -> Iterator[None]:
    """Every error as one line on stderr and exit code 2 (no verdict): the domain's, HTTP's and the
    database's (:func:`one_line_errors`), and any other (a reader's or a runtime's own), which
    would otherwise print a traceback and exit 1, the code of a failed validation."""
    try:
        with one_line_errors(url):
            yield
    except _ENDINGS:
        raise
    except Exception as exc:
        fail(ModelyardError(f"cannot validate: {type(exc).__name__}: {exc}"), url)


def _check_writable(html: Path | None) -> None:
    """Refuse an ``--html`` path no file can be written to, leaving nothing behind."""
    if html is None:
        return
    existed = html.exists()
    try:
        with html.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ModelyardError(f"--html {html}: cannot write the report there ({exc.strerror})") from None
    if not existed:
        html.unlink()


def _inputs(policy: Path | None, data: Path, labels: str | None) -> tuple[Policy, Dataset]:
    from modelyard.validation.data import load_dataset
    from modelyard.validation.policy import Policy, load_policy

    return (load_policy(policy) if policy is not None else Policy()), load_dataset(data, labels)


@contextlib.contextmanager
def _registry(url: str | None) -> Iterator[RegistryAPI]:
    from modelyard.control.settings import ControlSettings
    from modelyard.registry.fetch import open_registry

    api = open_registry(ControlSettings.from_env(), url)
    try:
        yield api
    finally:
        api.close()


def _is_ref(text: str) -> bool:
    """A registry reference (``name@alias``, ``name/3``) rather than a file; as ``modelyard serve``
    reads them: an existing path is a file, and a bare name never a reference."""
    if ".py:" in text or Path(text).exists() or ("@" not in text and text.count("/") != 1):
        return False
    from modelyard.registry.refs import parse_ref

    try:
        parse_ref(text)
    except ModelyardError:
        return False
    return True


def _subject(text: str, api: RegistryAPI | None) -> Subject:
    """The model ``text`` names, ready to load: a registry version fetched and verified, or a file."""
    from modelyard.control.settings import ControlSettings
    from modelyard.package.loading import spec_from_path
    from modelyard.registry.files import file_sha256
    from modelyard.validation.offline import Subject

    if api is not None and _is_ref(text):
        version = api.resolve(text)
        folder = ControlSettings.from_env().resolved_cache_dir() / version.sha256
        path = api.fetch(version.ref, folder)
        spec = spec_from_path(str(path), name=version.name, version=str(version.version))
        return Subject(text, version.ref, spec, version.sha256, (version.name, version.version))
    file = Path(text.partition(".py:")[0] + ".py" if ".py:" in text else text)
    if not file.exists():
        raise ModelyardError(f"{text}: no such model file (nor a registry reference like name@alias)")
    # A class in a source file is no one artifact (its file imports others): no digest to compare.
    digest = None if ".py:" in text or not file.is_file() else file_sha256(file)
    return Subject(text, str(file), _load_spec(spec_from_path, text), digest)


def _load_spec(loader: Any, text: str) -> Any:
    try:
        return loader(text)
    except (ModelyardError, OSError):
        raise
    except Exception as exc:  # an unknown suffix, a class that is not a model: one line, no traceback
        raise ModelyardError(f"cannot load {text}: {exc}") from None


def _refuse_same(candidate: Subject, baseline: Subject, allow_same: bool) -> None:
    """A candidate compared with itself passes every gate and proves nothing: refuse unless asked."""
    if not allow_same and candidate.sha256 is not None and candidate.sha256 == baseline.sha256:
        raise ModelyardError(
            f"the candidate {candidate.given} and the baseline {baseline.given} are the same artifact "
            f"(sha256 {candidate.sha256[:12]}...); pass --allow-same to compare them anyway"
        )


def _run(
    cand: Subject,
    base: Subject,
    dataset: Dataset,
    gates: Policy,
    *,
    batch_size: int,
    output: str | None,
    quiet: bool,
) -> Report:
    import asyncio

    from modelyard.validation.offline import run_validation

    with _progress(dataset.rows, quiet=quiet) as advance:
        run = run_validation(
            cand, base, dataset, gates, batch_size=batch_size, labels_output=output, progress=advance
        )
        return asyncio.run(run)


class _progress:
    """A rich progress bar on stderr (rows done, rows/s); nothing with ``quiet``."""

    def __init__(self, total: int, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total = total
        self.bar = Progress(
            TextColumn("validating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows, {task.fields[rate]} rows/s"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=quiet,
            transient=False,
        )
        self.task = self.bar.add_task("rows", total=total, rate="-")

    def __enter__(self) -> Any:
        self.bar.start()

        started, done = time.perf_counter(), 0

        def advance(rows: int) -> None:
            nonlocal done
            done += rows
            elapsed = time.perf_counter() - started
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
            self.bar.update(self.task, advance=rows, rate=rate)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _record(api: RegistryAPI, report: Report, version: tuple[str, int]) -> None:
    from modelyard.validation.verdicts import verdict_of

    dataset = str(Path(report.dataset.path).resolve())
    verdict = verdict_of(report, user=os_user(), dataset=dataset)
    recorded = api.record_validation(*version, verdict)
    typer.echo(f"recorded the verdict ({recorded.outcome}) on {recorded.name}/{recorded.version}", err=True)


def _show(report: Report, as_json: bool, html: Path | None) -> None:
    from modelyard.validation.report import render_html, render_terminal

    if html is not None:
        html.write_text(render_html(report), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console

    render_terminal(report, Console())
    if html is not None:
        typer.echo(f"report: {html}")
