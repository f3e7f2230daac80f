"""Child processes, written once: the line a server prints when it listens, starting a child and
waiting for that line, draining its output, stopping it, restart back-off, and the lifeline.

Every modelyard server prints one machine-readable line once its socket accepts connections::

    modelyard: serving on http://127.0.0.1:8080            (a model server)
    modelyard gateway: serving on http://127.0.0.1:8000     (a gateway, or ``registry``, ``control``)

:func:`announce` prints it and :func:`announced_url` reads it back; whoever starts a server
(``modelyard up``, the local deploy target, tests, benchmarks) waits for it instead of polling a port.

The lifeline: ``modelyard up`` starts the gateway and the local backend's replicas in sessions of
their own (so a Ctrl-C reaches only ``up``, which stops them in order). If ``up`` itself is killed
outright they would go on serving with nobody to stop them; so ``up`` passes its pid in
``MODELYARD_PARENT_PID`` and each child watches it, draining and exiting as on SIGTERM once its
parent is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO

__all__ = [
    "PARENT_ENV",
    "Backoff",
    "ChildFailed",
    "announce",
    "announced_url",
    "drain",
    "spawn_announced",
    "stop_with_parent",
    "terminate",
    "watch_parent_from_env",
]

PARENT_ENV = "MODELYARD_PARENT_PID"
_ANNOUNCED = re.compile(r"modelyard(?: (?P<component>[a-z][a-z-]*))?: serving on (?P<url>https?://\S+)")


class ChildFailed(RuntimeError):
    """A child process exited before it announced its URL."""


def announce(url: str, component: str | None = None) -> None:
    """Print the one line that says this server listens at ``url`` (flushed: a pipe reads it now)."""
    prefix = f"modelyard {component}" if component else "modelyard"
    print(f"{prefix}: serving on {url}", flush=True)


def announced_url(line: str, component: str | None = None) -> str | None:
    """The URL in an announce line (of ``component``'s server, when given), else None."""
    found = _ANNOUNCED.fullmatch(line.strip())
    if found is None or found.group("component") != component:
        return None
    return found.group("url")


def drain(stream: IO[str], on_line: Callable[[str], None] | None = None) -> threading.Thread:
    """Read ``stream`` to its end on a daemon thread, so the child never blocks on a full pipe."""

    def read() -> None:
        with contextlib.suppress(ValueError, OSError):  # closed under us: nothing left to read
            for line in stream:
                if on_line is not None:
                    on_line(line)

    thread = threading.Thread(target=read, name="modelyard-drain", daemon=True)
    thread.start()
    return thread


def spawn_announced(
    argv: Sequence[str], *, env: dict[str, str] | None = None, component: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``argv`` in a session of its own, wait for its announce line, drain the rest of its
    stdout; return the process and its URL. Raises :class:`ChildFailed` if it exits first."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        url = announced_url(line, component)
        if url is not None:
            drain(proc.stdout)
            return proc, url
    raise ChildFailed(f"{' '.join(argv[:4])} exited with code {proc.wait()} before it was serving")


def terminate(
    procs: Iterable[subprocess.Popen[str]] | Iterable[subprocess.Popen[bytes]], grace_s: float
) -> None:
    """SIGTERM every process still running (each drains and exits), wait up to ``grace_s`` in all,
    then SIGKILL the ones left: their whole process group when they lead one."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(proc)


def _kill(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:  # a session leader: take what it started with it
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    proc.wait()


class Backoff:
    """Restart delays: ``initial_s`` doubling up to ``max_s``; after a run of ``healthy_s`` without
    a failure it starts over (a crash long after the last one is not a crash loop)."""

    def __init__(self, initial_s: float, max_s: float, healthy_s: float = float("inf")) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("back-off needs 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.healthy_s = healthy_s
        self._next = initial_s
        self._last_failure = -float("inf")

    def next(self, now: float | None = None) -> float:
        """The delay before the next try, counting this call as a failure at ``now``."""
        now = time.monotonic() if now is None else now
        if now - self._last_failure > self.healthy_s:
            self._next = self.initial_s
        self._last_failure = now
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start over from ``initial_s`` (after a success)."""
        self._next = self.initial_s


def stop_with_parent(parent: int, interval_s: float = 0.5) -> None:
    """SIGTERM this process once its parent is no longer ``parent`` (it died; we were re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="modelyard-lifeline", daemon=True).start()


def watch_parent_from_env() -> None:
    """Start :func:`stop_with_parent` if ``MODELYARD_PARENT_PID`` names our parent.

    The variable is removed from the environment first, so that this process's own children
    (gateway workers, say) do not inherit a parent that is not theirs."""
    value = os.environ.pop(PARENT_ENV, "")
    if value.isdigit() and int(value) == os.getppid():
        stop_with_parent(int(value))
