"""A validation job's work in a process of its own: the dataset parsed, both versions loaded and run
on every row, the verdict handed back to the control plane.

The code a job runs is whoever pushed the version's: it may crash the interpreter, exhaust the
memory or never return. Inside the control plane it would take the gateway and the replicas of
``modelyard up`` down with it, or hold the job runner for good. In a child process it takes down
only itself: :func:`run_child` (the control plane's side) kills it at the job's deadline, or when
the control plane stops, and says how it ended; the child's side (:func:`main`, run as
``python -m modelyard.validation.job_child``) does what ``modelyard validate`` does.

What passes between them: one JSON :class:`ChildRequest` on the child's stdin; then JSON lines on
its stdout, each one object with one key:

    {"line": "..."}   a line for the job's log
    {"total": N}      the rows the dataset has
    {"rows": N}       N more rows compared
    {"done": {...}}   the outcome, each gate, and the verdict to record (a ``NewValidation``)
    {"error": "..."}  no verdict, and why, in one line

The child writes them on a copy of the stdout it was given and points its own stdout at stderr,
so what the model prints never passes for a message. The verdict is recorded by the parent, which
holds the registry's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from pydantic import BaseModel, ConfigDict

from modelyard._process import PARENT_ENV, drain, terminate, watch_parent_from_env
from modelyard.errors import ModelyardError

__all__ = [
    "ChildRequest", "ChildSide", "Listener", "NoVerdict", "Stopped", "main", "one_line", "run_child",
]  # fmt: skip

GRACE_S = 2.0  # between SIGTERM and SIGKILL when a child is stopped
_TICK_S = 0.2  # how often the parent looks at the stop flag and the deadline


class ChildSide(BaseModel):
    """One version, fetched by the parent: as given, as resolved, and where its artifact lies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given: str
    ref: str
    path: str
    name: str
    version: int
    sha256: str


class ChildRequest(BaseModel):
    """What the child needs to validate and to write the verdict (``user``: who records it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str  # the dataset as a local file (the parent fetched it)
    dataset: str  # as the setup names it, for the verdict
    labels: str | None = None
    output: str | None = None
    policy: dict[str, Any]
    candidate: ChildSide
    baseline: ChildSide
    user: str


class Listener(Protocol):
    """Where the child's log lines and progress go (the job's log)."""

    def line(self, message: str) -> None: ...

    def expect(self, total: int) -> None: ...

    def progress(self, rows: int) -> None: ...


class Stopped(Exception):
    """The control plane is stopping: the child was killed, the job goes back to the queue."""


class NoVerdict(Exception):
    """The child ended without a verdict: its own error, a crash, or the deadline. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the control plane's side -------------------------------------------------------------------


def run_child(
    request: ChildRequest, listener: Listener, *, stopping: threading.Event, deadline_s: float
) -> dict[str, Any]:
    """Run ``request`` in a child process and return its ``done`` message. Raises :class:`Stopped`
    once ``stopping`` is set, :class:`NoVerdict` at the deadline or when the child ends without a
    verdict; the child is gone either way. Its temporary files (whatever the model writes to
    ``$TMPDIR``) live in a folder removed afterwards, however it ended."""
    with tempfile.TemporaryDirectory(prefix="modelyard-job-") as work:
        # The lifeline: a control plane killed outright takes its child with it.
        env = {**os.environ, PARENT_ENV: str(os.getpid()), "TMPDIR": work}
        argv = [sys.executable, "-m", __name__]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        messages = _Messages(listener)
        assert proc.stdin is not None
        assert proc.stdout is not None
        listener.line(f"validating in process {proc.pid}")  # before the drain thread writes too
        reader = drain(proc.stdout, messages.read)
        with contextlib.suppress(BrokenPipeError):  # it died at once: its exit says why
            proc.stdin.write(request.model_dump_json())
            proc.stdin.close()
        try:
            _wait(proc, stopping, deadline_s)
        finally:
            _reap(proc)
        reader.join(GRACE_S)
        return messages.result(proc.returncode)


def _wait(proc: subprocess.Popen[str], stopping: threading.Event, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            proc.wait(_TICK_S)
            return
        except subprocess.TimeoutExpired:
            pass
        if stopping.is_set():
            raise Stopped
        if time.monotonic() >= deadline:
            raise NoVerdict(
                f"ran past its deadline of {_duration(deadline_s)} (validation_job_timeout_s): stopped"
            )


def _reap(proc: subprocess.Popen[str]) -> None:
    """Stop the child if it still runs, and whatever it started in its session with it."""
    terminate([proc], GRACE_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its session: a model's own helpers, left behind


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


class _Messages:
    """The child's messages as they come (on the drain thread): log lines and progress passed on,
    the last word kept."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.done: dict[str, Any] | None = None
        self.error: str | None = None

    def read(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if isinstance(message.get("line"), str):
            self.listener.line(message["line"][:1000])
        elif isinstance(message.get("total"), int):
            self.listener.expect(message["total"])
        elif isinstance(message.get("rows"), int):
            self.listener.progress(message["rows"])
        elif isinstance(message.get("done"), dict):
            self.done = message["done"]
        elif isinstance(message.get("error"), str):
            self.error = message["error"][:500]

    def result(self, returncode: int | None) -> dict[str, Any]:
        if self.error is not None:
            raise NoVerdict(self.error)
        if self.done is not None and returncode == 0:
            return self.done
        raise NoVerdict(_ended(returncode))


def _ended(returncode: int | None) -> str:
    """How a child that gave no verdict ended, in words."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the validation process was killed by {name}{hint} before it gave a verdict"
    return f"the validation process exited with code {returncode} before it gave a verdict"


# -- the child's side -----------------------------------------------------------------------------


def main() -> None:
    """Read a :class:`ChildRequest` on stdin, validate, write the messages; exit 0 whatever the
    verdict (a non-zero exit, or a signal, is the model's doing)."""
    channel = _channel()
    watch_parent_from_env()

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        request = ChildRequest.model_validate_json(sys.stdin.read())
        send({"done": _validate(request, send)})
    except Exception as exc:
        send({"error": one_line(exc)})
    channel.flush()
    # No waiting for threads a model left running: the verdict is out.
    os._exit(0)


def _channel() -> TextIO:
    """A stream on the stdout the parent reads; stdout itself (fd 1 and ``sys.stdout``) now goes to
    stderr, so that nothing a model prints can pass for a message."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def _validate(request: ChildRequest, send: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from modelyard.validation.data import load_dataset
    from modelyard.validation.offline import run_validation
    from modelyard.validation.policy import parse_policy
    from modelyard.validation.verdicts import verdict_of

    dataset = load_dataset(request.data, request.labels)
    send({"total": dataset.rows})
    send({"line": f"{dataset.rows} rows ({dataset.format}, sha256 {dataset.sha256[:12]})"})
    policy = parse_policy(request.policy, "policy")
    run = run_validation(
        _subject(request.candidate), _subject(request.baseline), dataset, policy,
        labels_output=request.output, progress=lambda rows: send({"rows": rows}) if rows else None,
    )  # fmt: skip
    report = asyncio.run(run)
    send({"line": f"{report.summary['rows']} rows in {report.seconds:.2f} s"})
    verdict = verdict_of(report, user=request.user, dataset=request.dataset)
    gates = [{"gate": g.gate, "outcome": g.outcome.value, "reason": g.reason} for g in report.gates]
    return {"outcome": report.outcome.value, "gates": gates, "verdict": verdict.model_dump(mode="json")}


def _subject(side: ChildSide) -> Any:
    from modelyard.package.loading import spec_from_path
    from modelyard.validation.offline import Subject

    spec = spec_from_path(side.path, name=side.name, version=str(side.version))
    return Subject(side.given, side.ref, spec, side.sha256, (side.name, side.version))


def one_line(exc: BaseException) -> str:
    """``exc`` as one line for a job's reason: its message, or its type and text."""
    message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
    return (message.strip().splitlines() or [type(exc).__name__])[0][:500]


if __name__ == "__main__":
    main()
