"""The local target's replicas as data: one run of a replica's process (its URL, the tail of its
stderr), a replica slot across restarts, a version's slots. ``LocalTarget`` (``local.py``) supervises
them under its lock."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import subprocess
import time
from typing import NamedTuple

from modelyard._process import Backoff, announced_url, drain
from modelyard.deploy.backend import VersionKey
from modelyard.deploy.spec import VersionSpec

__all__ = ["TAIL_LINES", "Deadline", "Process", "Replica", "Version"]

TAIL_LINES = 20  # stderr lines kept per process, for error messages


class Process:
    """One run of a replica: the subprocess, the URL it printed, the last lines of its stderr."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.url: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # Its own session and process group: a signal to the group reaches whatever it started, and
        # a Ctrl-C meant for the deploying process does not stop the replicas behind its back.
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, errors="replace", env=env, start_new_session=True,
        )  # fmt: skip
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        # Both pipes are read to the end, so neither fills up and blocks the replica.
        self._readers = [drain(self.popen.stdout, self._on_stdout), drain(self.popen.stderr, self._on_stderr)]

    def _on_stdout(self, line: str) -> None:
        if self.url is None:
            self.url = announced_url(line)

    def _on_stderr(self, line: str) -> None:
        if line.strip():
            self.tail.append(line.rstrip())

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the process group, while its leader lives (a reaped pid may be reused)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def wait(self, timeout_s: float) -> bool:
        try:
            self.popen.wait(max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True

    def stderr_tail(self, lines: int = 6) -> str:
        if not self.alive:  # it exited: let the readers take in its last words first
            for reader in self._readers:
                reader.join(0.5)
        return " | ".join(list(self.tail)[-lines:])


@dataclasses.dataclass(eq=False)
class Replica:
    """One replica slot; its process changes on every restart. Guarded by ``LocalTarget._lock``."""

    key: VersionKey
    id: str
    spec: VersionSpec
    backoff: Backoff
    process: Process | None = None
    state: str = "starting"  # starting, ready, restarting, failed, stopping (as ReplicaStatus)
    restarts: int = 0
    was_ready: bool = False
    restart_at: float = 0.0
    ready_probe_at: float = 0.0
    live_probe_at: float = 0.0
    ready_failures: int = 0
    live_failures: int = 0
    detail: str = ""

    @property
    def url(self) -> str | None:
        return self.process.url if self.process is not None and self.process.alive else None


@dataclasses.dataclass(eq=False)
class Version:
    key: VersionKey
    spec: VersionSpec | None = None  # what the last successful ensure asked for
    replicas: list[Replica] = dataclasses.field(default_factory=list)
    next_id: int = 0


class Deadline(NamedTuple):
    until: float  # time.monotonic()
    timeout_s: float  # as given, for messages
