"""What the end-to-end rollout tests share: ``modelyard up`` on a private home (started, killed
outright, started again), clients sending traffic through its gateway from a thread, and the
deploy file of a candidate rolled out from a baseline.

Everything is real: the control plane with its rollout controller and online analysis, the
gateway's worker, the replicas (``modelyard serve``); the tests talk to them over HTTP and the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelyard._process import announced_url
from tests.support import processes_with_env

CLI = str(Path(sys.executable).with_name("modelyard"))
MODELS = Path(__file__).with_name("rollout_models.py")  # model classes served as file.py:Class
ENDED = ("succeeded", "rolled_back", "aborted", "superseded", "halted")
X = np.arange(6, dtype=np.float32).reshape(2, 3)  # what every client sends: two rows of three
ROUTING_CONVERGES_S = 1.0  # a gateway worker picks a routing change up within this (docs/gateway.md)

BASELINE = """deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {{uri: '{v1}', weight: 100}}
"""
CANDIDATE = """  - version: v2
    spec:
      uri: '{v2}'
      rollout:
        baseline: v1
        steps: {steps}
        gates: {gates}
"""


@contextlib.contextmanager
def rolling_out(
    up: Up, v1: str | Path, v2: str | Path, *, steps: str, gates: str, clients: int = 1
) -> Iterator[Traffic]:
    """v1 serves everyone, its answers logged in full (agreement compares their values), and
    ``clients`` threads send traffic; then a deploy file rolls v2 out from v1."""
    baseline = up.home.parent / "baseline.yaml"
    baseline.write_text(BASELINE.format(v1=v1))
    up.cli("deploy", "apply", str(baseline))
    up.cli("route", "options", "mail/spam", "--log-payload", "full")
    time.sleep(ROUTING_CONVERGES_S)  # a first route: the gateway would answer 404 until it has it
    with Traffic(up.gateway, clients) as traffic:
        traffic.wait_for(20)
        candidate = up.home.parent / "rollout.yaml"
        candidate.write_text(BASELINE.format(v1=v1) + CANDIDATE.format(v2=v2, steps=steps, gates=gates))
        applied = up.cli("deploy", "apply", str(candidate))
        assert "rollout #1: v2 from v1" in applied, applied
        yield traffic


def wait_until(condition: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


class Up:
    """``modelyard up --allow-local-paths`` with one gateway worker, on ``home``; see the module."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "MODELYARD_HOME": str(home)}
        for name in (
            "MODELYARD_REGISTRY_URL",
            "MODELYARD_CONTROL_URL",
            "MODELYARD_REGISTRY_DB",
            "MODELYARD_TOKEN",
        ):
            self.env.pop(name, None)
        self.proc: subprocess.Popen[str] | None = None
        self.control = self.gateway = ""
        self.stderr = home.parent / "up.stderr"

    def start(self) -> None:
        """Start it and wait for the two URLs it announces (after it restored what ran before)."""
        self.home.mkdir(parents=True, exist_ok=True)
        command = [
            CLI,
            "up",
            "--port",
            "0",
            "--gateway-port",
            "0",
            "--gateway-workers",
            "1",
            "--allow-local-paths",
        ]
        with self.stderr.open("a") as err:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=self.env)
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline().strip() for _ in range(2)]
        urls = [announced_url(line, who) for line, who in zip(lines, ("control", "gateway"), strict=True)]
        assert all(urls), (lines, self.stderr.read_text())
        self.control, self.gateway = str(urls[0]), str(urls[1])
        self.env["MODELYARD_CONTROL_URL"] = self.control

    def kill(self) -> None:
        """SIGKILL, no chance to stop anything; returns once its gateway and replicas are gone too."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        gone = wait_until(lambda: not self.children(), 30)
        assert gone, f"left behind: {self.children()}"

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C: a clean exit, and nothing it started outlives it."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                assert self.proc.wait(60) == 0, self.stderr.read_text()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)

    def children(self) -> list[int]:
        return processes_with_env("MODELYARD_HOME", str(self.home))

    def cli(self, *args: str, expect: int = 0) -> str:
        result = subprocess.run(
            [CLI, *args], capture_output=True, text=True, env=self.env, timeout=120, check=False
        )
        assert result.returncode == expect, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def get(self, path: str) -> Any:
        with httpx.Client(base_url=self.control, timeout=10, trust_env=False) as http:
            response = http.get(path)
        response.raise_for_status()
        return response.json()

    def rollout(self) -> dict[str, Any]:
        """mail/spam's rollout, as the REST API shows it."""
        found: dict[str, Any] = self.get("/api/v1/rollouts/mail/spam")
        return found

    def weights(self) -> dict[str, tuple[int, float | None]]:
        """mail/spam's routing: version -> (weight, mirror fraction or None)."""
        route = self.get("/api/v1/routes/mail/spam")
        return {
            v["version"]: (v["weight"], v["mirror_fraction"] if v["mirror"] else None)
            for v in route["versions"]
        }

    def wait_for_rollout(
        self, condition: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> dict[str, Any]:
        """Poll the rollout until ``condition`` holds; the last reading either way."""
        seen: list[dict[str, Any]] = []

        def check() -> bool:
            seen.append(self.rollout())
            return condition(seen[-1])

        wait_until(check, timeout_s)
        return seen[-1]

    def ended(self, timeout_s: float) -> dict[str, Any]:
        rollout = self.wait_for_rollout(lambda r: r["state"] in ENDED, timeout_s)
        assert rollout["state"] in ENDED, story(rollout)
        return rollout


def story(rollout: dict[str, Any]) -> str:
    """A rollout's events, one a line: what a failed assertion should show."""
    lines = [f"{rollout['state']} at {rollout['at']}: {rollout['reason']}"]
    for event in rollout.get("events", []):
        lines.append(f"  {event['at']} {event['event']} by {event['actor']}: {event['reason']}")
        figures = event.get("figures") or {}
        if figures.get("gates"):
            gates = ", ".join(f"{g['name']}={g['value']} {g['outcome']}" for g in figures["gates"])
            lines.append(f"    {figures.get('count')} requests in {figures.get('elapsed_s')}s: {gates}")
    return "\n".join(lines)


def events(rollout: dict[str, Any]) -> list[str]:
    return [event["event"] for event in rollout["events"]]


@dataclasses.dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when it came back
    status: int  # 0: no answer (connection refused, reset, timeout)
    version: str | None  # the x-modelyard-route-version header: which version answered
    predictions: Any = None


class Traffic:
    """Clients: ``threads`` threads, each posting ``X`` to mail/spam through the gateway up to 100
    times a second, keeping every answer. ``gateway`` may change under them (a restarted ``up``)."""

    def __init__(self, gateway: str, threads: int = 1) -> None:
        self.gateway = gateway
        self.answers: list[Answer] = []  # list.append is atomic: the threads share it
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name="clients", daemon=True) for _ in range(threads)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        body = {"instances": X.tolist()}
        with httpx.Client(timeout=10, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    response = http.post(f"{self.gateway}/projects/mail/models/spam:predict", json=body)
                    answer = Answer(
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("x-modelyard-route-version"),
                        response.json().get("predictions") if response.status_code == 200 else None,
                    )
                except httpx.HTTPError:
                    answer = Answer(time.monotonic(), 0, None)
                self.answers.append(answer)
                self._stop.wait(0.01)

    def seen(self, since: float = 0.0) -> Counter[tuple[int, str | None]]:
        """(status, version) of every answer since ``since`` (time.monotonic()), counted."""
        return Counter((a.status, a.version) for a in list(self.answers) if a.at >= since)

    def wait_for(self, count: int, timeout_s: float = 30) -> None:
        """Until ``count`` more answers came back (the gateway serves)."""
        target = len(self.answers) + count
        assert wait_until(lambda: len(self.answers) >= target, timeout_s), self.seen()
