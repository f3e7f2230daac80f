"""The real multi-process gateway: ``modelyard gateway serve --workers 2`` in a subprocess.

The supervisor binds one socket and starts two worker processes that accept on it; the tests talk
to it on fresh connections (so the kernel spreads them over the workers), route through stub
replicas running in this process, change routes with ``RouteStore``, and signal the processes.

Which worker answered is read from each worker's own metrics snapshot (``<pid>.prom``, written
about once a second for the merged ``/metrics``): the supervisor makes that folder with
``tempfile.mkdtemp``, so the gateway runs with ``TMPDIR`` under the test's tmp_path. Workers are
found as the supervisor's children in /proc. The gateway is started in its own session, and
whatever happens the whole process group is killed at the end, so no worker outlives a test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.support import GatewayWorld, StubReplica, wait_for, world
from tests.support import AnnouncedProcess

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 60.0  # two workers importing the gateway on a busy 2-core machine
PREDICT = "/projects/mail/models/spam:predict"
SERVE = [sys.executable, "-m", "modelyard", "gateway", "serve", "--port", "0"]


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children(parent: int) -> dict[int, int]:
    """The live children of ``parent``: pid -> start time (which tells a reused pid apart)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent and fields[0] != "Z":
                found[int(entry.name)] = int(fields[19])
    return found


def alive(pid: int, started: int) -> bool:
    fields = _stat(pid)
    return fields is not None and int(fields[19]) == started and fields[0] != "Z"


class GatewayProcess(AnnouncedProcess):
    """``modelyard gateway serve`` in its own session; ``url`` once it printed its serving line."""

    def __init__(self, tmp_path: Path, home: Path, args: list[str]) -> None:
        self.tmp = tmp_path / "gateway-tmp"  # the gateway's TMPDIR: its metrics folder lands here
        self.tmp.mkdir(exist_ok=True)
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "PROMETHEUS_"))}
        environ.update(MODELYARD_HOME=str(home), TMPDIR=str(self.tmp), PYTHONUNBUFFERED="1")
        # Its own process group: the workers can all be killed.
        super().__init__([*SERVE, *args], tmp_path / "gateway-stderr.txt", component="gateway",
                         cwd=tmp_path, env=environ, start_new_session=True)  # fmt: skip
        self.admin_url = ""  # with --admin-port: set by wait_ready

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        """The gateway's URL; ``admin_url`` is set too (its line comes first)."""
        self.component = "gateway-admin"
        self.admin_url = self.wait_until_serving(timeout)
        self.component = "gateway"
        return self.wait_until_serving(timeout)

    def workers(self) -> dict[int, int]:
        return children(self.proc.pid)

    def wait_workers(self, count: int = 2) -> dict[int, int]:
        assert wait_for(lambda: len(self.workers()) == count, timeout=10), (self.workers(), self.stderr())
        return self.workers()

    def served(self, version: str | None = None) -> dict[int, float]:
        """Requests to mail/spam each worker answered (by pid), from its latest metrics snapshot."""
        counts: dict[int, float] = {}
        for path in self.tmp.glob("modelyard-gateway-metrics-*/*.prom"):
            for family in text_string_to_metric_families(path.read_text()):
                for sample in family.samples:
                    labels = sample.labels
                    wanted = labels.get("project") == "mail" and version in (None, labels["version"])
                    if sample.name == "modelyard_gateway_requests_total" and wanted:
                        counts[int(path.stem)] = counts.get(int(path.stem), 0.0) + sample.value
        return counts

    def scraped(self) -> float:
        """mail/spam requests as ``/metrics`` (on any worker) sums them over every worker."""
        text = httpx.get(self.admin_url + "/metrics", timeout=10).text
        prefix = "modelyard_gateway_requests_total{"
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and 'project="mail"' in line
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group: no supervisor or worker may outlive the test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned workers keep the group alive
        self.proc.kill()
        self.proc.wait(timeout=15)
        self._reader.join(10)  # EOF once every process holding the pipe is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[GatewayWorld]:
    with world(tmp_path) as created:
        yield created


@pytest.fixture
def serve(tmp_path: Path, env: GatewayWorld) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def _serve(*extra: str) -> GatewayProcess:
        args = [
            "--workers", "2", "--refresh-interval", "0.1", "--admin-port", "0",
            "--log-sink", str(tmp_path / "logs" / "inference.jsonl"), *extra,
        ]  # fmt: skip
        gateway = GatewayProcess(tmp_path, env.control.home, args)
        started.append(gateway)
        gateway.wait_ready()
        return gateway

    try:
        yield _serve
    finally:
        for gateway in started:
            gateway.stop()


def routed(env: GatewayWorld, *versions: str) -> list[StubReplica]:
    """A replica per version (named after it) for mail/spam; the first version takes all traffic."""
    replicas = [env.replica(version) for version in versions]
    env.store.set_weights("mail", "spam", {versions[0]: 1})
    for version, replica in zip(versions, replicas, strict=True):
        env.store.set_replicas("mail", "spam", version, [replica.url])
    return replicas


def predict(gateway: GatewayProcess) -> tuple[int, str]:
    """One request on a new connection (the kernel picks the worker): status, answering version."""
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", PREDICT, b'{"instances": [[1.0]]}', {"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("x-modelyard-route-version", "")
    finally:
        connection.close()


def test_connections_spread_over_both_workers_and_metrics_sum_them(
    env: GatewayWorld, serve: Callable[..., GatewayProcess]
) -> None:
    routed(env, "v1")
    gateway = serve()
    workers = gateway.wait_workers()
    sent = 0
    deadline = time.monotonic() + 15
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # The kernel hands each new connection to whichever worker accepts it first: send until
        # both have answered (a few dozen requests), bounded.
        while {pid for pid, n in gateway.served().items() if n} != set(workers):
            assert time.monotonic() < deadline, (gateway.served(), workers)
            answers = list(pool.map(lambda _: predict(gateway), range(20)))
            assert answers == [(200, "v1")] * 20
            sent += 20
    # Counts are taken after the answer is written and published at each poll: wait for the last
    # ones, then compare exactly.
    assert wait_for(lambda: gateway.scraped() == sent), (gateway.scraped(), sent)
    assert wait_for(lambda: sum(gateway.served().values()) == sent), (gateway.served(), sent)
    assert set(gateway.served()) == set(workers)


def test_routing_change_reaches_every_worker_within_a_second(
    env: GatewayWorld, serve: Callable[..., GatewayProcess]
) -> None:
    routed(env, "v1", "v2")
    gateway = serve()
    workers = gateway.wait_workers()
    assert predict(gateway) == (200, "v1")
    env.store.set_weights("mail", "spam", {"v2": 1})
    deadline = time.monotonic() + 1.0
    sent = 1
    while time.monotonic() < deadline:  # traffic while the workers pick the change up
        assert predict(gateway)[0] == 200
        sent += 1
    assert wait_for(lambda: sum(gateway.served().values()) == sent)  # every count is in
    before = gateway.served("v2")
    late = [predict(gateway) for _ in range(40)]
    assert late == [(200, "v2")] * 40
    assert wait_for(lambda: sum(gateway.served().values()) == sent + 40)
    after = gateway.served("v2")
    # Both workers answered some of the 40: neither was left unchecked.
    assert all(after.get(pid, 0.0) > before.get(pid, 0.0) for pid in workers), (before, after)


def test_with_routes_every_worker_routes_by_the_file_and_follows_it(
    env: GatewayWorld, serve: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    one, two = env.replica("v1"), env.replica("v2")
    path = tmp_path / "routes.yaml"

    def write(live: str) -> None:
        versions = [(name, replica.url, int(name == live)) for name, replica in (("v1", one), ("v2", two))]
        lines = [f"  - {{version: {n}, weight: {w}, replicas: [{url}]}}" for n, url, w in versions]
        path.write_text("- project: mail\n  model: spam\n  versions:\n" + "\n".join(lines) + "\n")

    write("v1")
    gateway = serve("--routes", str(path))
    gateway.wait_workers()
    assert env.store.list() == []  # the database routes nothing: every answer below is the file's
    assert [predict(gateway) for _ in range(20)] == [(200, "v1")] * 20
    write("v2")
    assert wait_for(lambda: [predict(gateway) for _ in range(20)] == [(200, "v2")] * 20, timeout=10)


def test_sigterm_finishes_the_request_in_flight_and_exits_0_leaving_no_worker(
    env: GatewayWorld, serve: Callable[..., GatewayProcess]
) -> None:
    [replica] = routed(env, "v1")
    replica.delay_s = 0.5
    gateway = serve()
    workers = gateway.wait_workers()
    answers: list[tuple[int, str]] = []

    def in_flight() -> None:
        try:
            answers.append(predict(gateway))
        except (OSError, http.client.HTTPException) as exc:  # failed below, in the test's thread
            answers.append((0, repr(exc)))

    thread = threading.Thread(target=in_flight)
    thread.start()
    assert wait_for(lambda: len(replica.requests) == 1)
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(timeout=10) == 0, gateway.stderr()
    thread.join(10)
    assert answers == [(200, "v1")]  # drained: the request in flight was answered
    assert [pid for pid, started in workers.items() if alive(pid, started)] == []
    assert "Traceback" not in gateway.stderr()


def test_a_killed_worker_is_restarted_and_the_gateway_keeps_answering(
    env: GatewayWorld, serve: Callable[..., GatewayProcess]
) -> None:
    routed(env, "v1")
    gateway = serve()
    original = gateway.wait_workers()
    victim = min(original)
    os.kill(victim, signal.SIGKILL)
    restart = f"modelyard gateway: worker {victim} exited (-9); restarting"
    assert wait_for(lambda: restart in gateway.stderr(), timeout=5), gateway.stderr()
    assert wait_for(lambda: len(gateway.workers()) == 2 and victim not in gateway.workers(), timeout=10)
    [replacement] = set(gateway.workers()) - set(original)
    deadline = time.monotonic() + 15
    # No retries: every request after the restart line must succeed, until the new worker has
    # answered some of them too.
    while not gateway.served().get(replacement):
        assert time.monotonic() < deadline, (gateway.served(), gateway.stderr())
        assert [predict(gateway) for _ in range(10)] == [(200, "v1")] * 10


def test_workers_drain_and_exit_when_the_supervisor_is_killed(
    env: GatewayWorld, serve: Callable[..., GatewayProcess]
) -> None:
    routed(env, "v1")
    gateway = serve()
    workers = gateway.wait_workers()
    os.kill(gateway.proc.pid, signal.SIGKILL)  # it cannot stop them: they must notice by themselves
    gateway.proc.wait(timeout=5)
    assert wait_for(lambda: not any(alive(pid, started) for pid, started in workers.items()), timeout=10)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--workers", "-1"], "workers"),
        (["--log-sink", "ftp://x"], "log_sink"),
        (["--idle-poll-us", "-5"], "idle_poll_us"),
    ],
    ids=["workers", "log-sink", "idle-poll-us"],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(tmp_path: Path, args: list[str], named: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    environ["MODELYARD_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [*SERVE, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=environ,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # it started serving instead: take its workers down too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 2, stderr
    assert stdout == ""
    [line] = stderr.splitlines()
    assert line.startswith("modelyard: ")
    assert named in line
