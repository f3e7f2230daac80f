"""The local deploy target (the embedded default): each replica is a ``modelyard serve`` process here.

A replica runs ``python -m modelyard serve URI --name MODEL --port 0 --announce P/M/V ...`` in its own
session, so it heart-beats itself into the routing table that ``control`` (or ``control_url``) names
and the gateways route to it once it is ready (``routing/announcer.py``). A supervisor thread per
target watches the processes:

- it learns each replica's URL from its ``modelyard: serving on URL`` line, and calls it *ready*
  once ``GET URL/health/ready`` answers 200 **and** the routing table lists it as ready (so "ready"
  means "the gateways can route to it", not merely "it loaded");
- a ready replica is probed at the spec's readiness/liveness periods; one that fails liveness
  ``failure_threshold`` times in a row is killed and restarted;
- a replica that dies after it was once ready is restarted with exponential back-off
  (``restart_backoff_s`` doubling up to ``max_backoff_s``, back to the start after a run of 10 s);
  its dead URL is deregistered at once rather than left to expire. One that exits before it was
  ever ready is marked ``failed`` and not restarted: :meth:`LocalTarget.ensure` reports it.

A rolling update (:meth:`LocalTarget.ensure` with a changed spec) starts every new replica, waits
until all are ready, then stops the old replicas one by one. No pause is needed in between: a
gateway reads the whole routing table at once, so a poll that shows an old replica not-ready also
shows the new ones ready, and a gateway whose polls lag is covered by the drain grace. With a
``replica_gate`` in the spec and evidence to read it (:meth:`LocalTarget.use_replica_evidence`), an
update of a version running two replicas or more goes one gated replica first (``replica_gate.py``);
:meth:`LocalTarget.replica_gates` has each version's newest reading of its gate.

Stopping is a drain: SIGTERM makes the server report not-ready and keep serving for
``drain_grace_s`` (``modelyard serve --drain-grace``); the target also marks the replica not-ready
in the routing table at once, so gateways stop sending on their next poll instead of after the
replica's next heartbeat (up to 2 s). After the grace the server stops accepting, finishes what is
in flight and deregisters. Replicas that do not stop within ``drain_grace_s + stop_timeout_s`` are
killed (SIGKILL to their process group).

Limits of the local backend, by design or not yet done:

- autoscaling runs ``autoscaling.min_replicas`` replicas: there is no local autoscaler yet;
- ``resources`` (cpu, memory, gpu) are not enforced or reserved; ``image`` is ignored. ``gpu: N``
  starts the replica with ``--device cuda`` and, on a host with more GPUs than ``N``, its own
  ``CUDA_VISIBLE_DEVICES`` (``gpus.py``: round robin by replica number, shared, not reserved);
- the startup probe is not used: ``ensure``'s ``timeout_s`` bounds a start instead;
- a registry alias (``spam@production``) is resolved when a replica starts: moving the alias does
  not restart running replicas, but a replica restarted after a crash gets the alias' new target;
- one ``ensure``/``remove`` runs at a time per target;
- ``host`` must be an address the gateways can reach (not ``0.0.0.0``: replicas announce the
  address they serve on);
- replicas run in their own sessions and outlive a supervising process that is killed outright:
  call :meth:`LocalTarget.close` (or use the target as a context manager). An ``atexit`` hook closes
  every open target on a normal interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import httpx

from modelyard._process import PARENT_ENV, Backoff
from modelyard.control.settings import ControlSettings
from modelyard.deploy.backend import ReplicaStatus, VersionKey
from modelyard.deploy.spec import VersionSpec
from modelyard.deploy.targets.gpus import VISIBLE, host_gpus, replica_gpus
from modelyard.deploy.targets.processes import Deadline, Process, Replica, Version
from modelyard.deploy.targets.replica_gate import NO_EVIDENCE, GateReport, ReplicaEvidence, ReplicaWatch
from modelyard.errors import ModelNotReady
from modelyard.routing.announcer import EndpointsAPI, parse_target

if TYPE_CHECKING:
    from modelyard.routing.discovery import Announcement

__all__ = ["LocalTarget"]

log = logging.getLogger("modelyard.deploy")

_TICK_S = 0.1  # how often the supervisor looks at its processes (and probes starting replicas)
_STABLE_S = 10.0  # a run this long before dying resets the restart back-off
_ANNOUNCE_TTL_S = 6.0  # the announcer's time-to-live (discovery.Announcer), reused for our mark


class _Routes(EndpointsAPI, Protocol):
    """What the target needs of the routing table: ``RouteStore`` and ``RouteClient`` have it."""

    def endpoints(self) -> list[Announcement]: ...


def _launch_key(spec: VersionSpec) -> tuple[object, ...]:
    """The parts of a spec a replica's process is started with: any change is a rolling update.
    Weight, mirror and probes are not (they are the gateway's or the supervisor's business), nor are
    resources and image (not used locally), but for the GPUs (``--device``)."""
    return (spec.uri, spec.batching, spec.server, spec.resources.gpu)


class LocalTarget:
    """Runs versions as supervised ``modelyard serve`` processes on this machine; see the module.

    ``control``: the control-plane database the replicas announce into and the target reads the
    routing table from (default: from the environment); ``control_url``: a control plane over REST
    instead (passed as ``--control-url``). ``home_env``: variables added to every replica's
    environment (``server.env`` of the spec comes on top, the control plane's variables last).
    Replicas inherit this process's environment except its credentials: ``MODELYARD_TOKEN`` only
    when they announce over REST (``control_url``), ``MODELYARD_API_KEY`` never.
    """

    _replica_evidence: ReplicaEvidence | None = None  # what a replica_gate reads (use_replica_evidence)

    def __init__(
        self,
        control: ControlSettings | None = None,
        *,
        control_url: str | None = None,
        host: str = "127.0.0.1",
        home_env: dict[str, str] | None = None,
        restart_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        drain_grace_s: float = 3.0,
        stop_timeout_s: float = 35.0,
    ) -> None:
        self.home_env = dict(home_env or {})
        self.control = control or ControlSettings.from_env({**os.environ, **self.home_env})
        self.control_url = control_url
        self.host = host
        self.restart_backoff_s = restart_backoff_s
        self.max_backoff_s = max_backoff_s
        # The announcer beats every 2 s and gateways poll every 0.25 s: 3 s of serving while
        # not-ready covers both even if our own early not-ready mark could not be written.
        self.drain_grace_s = drain_grace_s
        self.stop_timeout_s = stop_timeout_s  # beyond the grace: in-flight requests (server: 30 s)
        self._versions: dict[VersionKey, Version] = {}
        self._gates: dict[VersionKey, GateReport] = {}  # each version's newest replica-gate reading
        self._lock = threading.RLock()  # guards _versions and every replica's fields
        self._operation = threading.Lock()  # one ensure/remove at a time
        self._closed = threading.Event()
        self._http = httpx.Client(trust_env=False)  # probes go to 127.0.0.1, never via a proxy
        self._routes: _Routes | None = None
        self._tick_routes: set[tuple[str, str, str, str]] | None = None
        self._routes_failing = False
        self._thread = threading.Thread(target=self._supervise, name="modelyard-local-target", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    # -- DeployTarget ------------------------------------------------------------------------------

    def ensure(self, key: VersionKey, spec: VersionSpec, *, timeout_s: float = 300.0) -> None:
        """Run ``key`` as ``spec`` says and return once all its replicas are ready (DeployTarget)."""
        parse_target("/".join(key))  # the names must make a valid --announce
        with self._operation:
            self._check_open()
            deadline = Deadline(time.monotonic() + timeout_s, timeout_s)
            with self._lock:
                version = self._versions.setdefault(key, Version(key))
                running = [r for r in version.replicas if r.state != "stopping"]
                same = version.spec is not None and _launch_key(version.spec) == _launch_key(spec)
                if same:  # probes' timings may have changed: they apply to the running replicas
                    version.spec = spec
                    for replica in running:
                        replica.spec = spec
            if same:
                self._scale(version, running, spec, deadline)
            else:
                self._roll(version, running, spec, deadline)

    def remove(self, key: VersionKey) -> None:
        """Drain and stop every replica of ``key`` (DeployTarget); nothing happens if none runs."""
        with self._operation:
            with self._lock:
                version = self._versions.get(key)
                replicas = list(version.replicas) if version is not None else []
            self._stop(replicas)  # all at once: the version no longer gets traffic
            with self._lock:
                self._versions.pop(key, None)
                self._gates.pop(key, None)

    def status(self) -> list[ReplicaStatus]:
        """Every replica of every version, by version and replica id."""
        with self._lock:
            return [
                ReplicaStatus(*r.key, r.id, r.url, r.state, r.restarts, r.detail)
                for key in sorted(self._versions)
                for r in sorted(self._versions[key].replicas, key=lambda r: int(r.id))
            ]

    def close(self) -> None:
        """Stop supervising and stop every process: drained with SIGTERM, killed after a timeout."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(30)
        with self._lock:
            everything = [r for version in self._versions.values() for r in version.replicas]
        self._stop(everything)
        self._http.close()
        if self._routes is not None:
            with contextlib.suppress(Exception):
                self._routes.close()
        _OPEN.discard(self)

    def pid(self, key: VersionKey, replica: str) -> int | None:
        """The process id of a replica's current process (for operators and tests)."""
        with self._lock:
            version = self._versions.get(key)
            for found in version.replicas if version is not None else []:
                if found.id == replica and found.process is not None and found.process.alive:
                    return found.process.popen.pid
        return None

    def __enter__(self) -> LocalTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- ensure's steps ----------------------------------------------------------------------------

    def _scale(self, version: Version, running: list[Replica], spec: VersionSpec, deadline: Deadline) -> None:
        """Same spec: add or drain replicas until the spec's count run, then wait for all to be ready."""
        want = spec.min_replicas
        if len(running) > want:  # the not-ready ones go first, then the youngest
            extras = sorted(running, key=lambda r: (r.state == "ready", -int(r.id)))[: len(running) - want]
            self._stop(extras)
            running = [r for r in running if r not in extras]
        added = [self._add(version, spec) for _ in range(want - len(running))]
        self._await_ready(version, running + added, deadline, discard=added)

    def _roll(self, version: Version, old: list[Replica], spec: VersionSpec, deadline: Deadline) -> None:
        """A new spec: start all new replicas, wait for them, then drain the old ones one by one.
        With a replica gate (:meth:`_gated`), one new replica first, watched beside the old ones."""
        new: list[Replica] = []
        if self._gated(version, old, spec):
            first = self._add(version, spec)
            self._await_ready(version, [first], deadline, discard=[first])
            self._watch_first(version, first, old, spec)
            new.append(first)
            deadline = Deadline(time.monotonic() + deadline.timeout_s, deadline.timeout_s)
        new += [self._add(version, spec) for _ in range(spec.min_replicas - len(new))]
        self._await_ready(version, new, deadline, discard=new)
        with self._lock:
            version.spec = spec
        # Every new replica is listed as ready in the routing table now, before any old one is marked
        # not-ready: no gateway poll can find the version without a ready replica (module docstring).
        for replica in old:  # one by one: capacity shrinks by one replica at a time
            self._stop([replica])

    def use_replica_evidence(self, evidence: ReplicaEvidence | None) -> None:
        """Read a spec's ``replica_gate`` from ``evidence`` (the control plane's online analysis)."""
        self._replica_evidence = evidence

    def replica_gates(self) -> list[GateReport]:
        """Each version's newest replica-gate reading (``GateReporter``): a watch in progress, with
        its figures so far, or its verdict."""
        with self._lock:
            return [self._gates[key] for key in sorted(self._gates)]

    def _gate_read(self, report: GateReport) -> None:
        with self._lock:
            self._gates[report.key] = report

    def _gated(self, version: Version, old: list[Replica], spec: VersionSpec) -> bool:
        """Whether this update goes one gated replica first: the spec asks for it and two old
        replicas or more serve (siblings to compare with). Refused without evidence to read."""
        with self._lock:
            serving = [r for r in old if r.state == "ready"]
        if spec.replica_gate is None or len(serving) < 2 or spec.min_replicas < 1:
            return False
        if self._replica_evidence is None:
            raise ModelNotReady("/".join(version.key), NO_EVIDENCE)
        return True

    def _watch_first(self, version: Version, first: Replica, old: list[Replica], spec: VersionSpec) -> None:
        """Watch the first new replica against its old siblings; on failure stop it and raise."""
        assert spec.replica_gate is not None and self._replica_evidence is not None  # noqa: PT018
        with self._lock:
            url, siblings = first.url or "", [r.url for r in old if r.url is not None]
        watch = ReplicaWatch(self._replica_evidence, version.key, spec.replica_gate, report=self._gate_read)
        reading = watch.run(
            url, siblings, lambda: first.state == "ready" and first.url == url, self._closed, replica=first.id
        )
        if reading.outcome != "pass":
            self._stop([first])  # the old replicas were never touched: they go on serving
            raise ModelNotReady("/".join(version.key), reading.failure(first.id))

    def _await_ready(
        self, version: Version, replicas: list[Replica], deadline: Deadline, discard: list[Replica]
    ) -> None:
        """Wait until every replica is ready; else stop ``discard`` and raise ModelNotReady."""
        until, timeout_s = deadline.until, deadline.timeout_s
        while True:
            with self._lock:
                states = [(r, r.state) for r in replicas]
            failed = [r for r, state in states if state == "failed"]
            waiting = [r for r, state in states if state != "ready"]
            if not waiting:
                return
            if failed or time.monotonic() >= until or self._closed.is_set():
                culprit = (failed or waiting)[0]
                reason = self._failure(culprit, timeout_s, closed=self._closed.is_set())
                self._stop(discard)
                raise ModelNotReady("/".join(version.key), reason)
            time.sleep(_TICK_S / 2)

    def _failure(self, replica: Replica, timeout_s: float, *, closed: bool) -> str:
        """Why ``replica`` is not ready, with the last lines of its process' stderr."""
        with self._lock:
            state, detail, process = replica.state, replica.detail, replica.process
        if state == "failed":
            return f"replica {replica.id} {detail}"
        why = "the target was closed" if closed else f"not ready within {timeout_s:g} s"
        tail = process.stderr_tail() if process is not None else ""
        return f"replica {replica.id} {why} ({state}{': ' + detail if detail else ''})" + (
            f"; stderr: {tail}" if tail else ""
        )

    def _add(self, version: Version, spec: VersionSpec) -> Replica:
        with self._lock:
            self._check_open()
            replica = Replica(
                version.key,
                str(version.next_id),
                spec,
                backoff=Backoff(self.restart_backoff_s, self.max_backoff_s),
            )
            version.next_id += 1
            version.replicas.append(replica)
            self._spawn(replica)
        return replica

    def _stop(self, replicas: list[Replica]) -> None:
        """Drain ``replicas`` together: SIGTERM, an early not-ready mark, SIGKILL after the timeout."""
        with self._lock:
            for replica in replicas:
                replica.state = "stopping"  # the supervisor leaves it alone from now on
            processes = [(r, r.process) for r in replicas if r.process is not None and r.process.alive]
        for _, process in processes:
            process.signal(signal.SIGTERM)
        for replica, process in processes:
            if process.url is not None:
                self._call_routes("heartbeat", replica.key, process.url, ready=False, ttl_s=_ANNOUNCE_TTL_S)
        until = time.monotonic() + self.drain_grace_s + self.stop_timeout_s
        for replica, process in processes:
            if not process.wait(until - time.monotonic()):
                log.warning(
                    "replica %s of %s did not stop in time: killing it", replica.id, "/".join(replica.key)
                )
                process.signal(signal.SIGKILL)
                process.wait(5.0)
                if process.url is not None:  # it could not deregister itself
                    self._call_routes("deregister", replica.key, process.url)
        with self._lock:
            for replica in replicas:
                version = self._versions.get(replica.key)
                if version is not None and replica in version.replicas:
                    version.replicas.remove(replica)

    # -- processes ---------------------------------------------------------------------------------

    def _spawn(self, replica: Replica) -> None:
        """Start the replica's process (with the lock held)."""
        try:
            replica.process = Process(
                self._command(replica.key, replica.spec), self._environment(replica.spec, int(replica.id))
            )
        except OSError as exc:
            replica.process = None
            replica.state, replica.detail = "failed", f"could not be started: {exc}"
            return
        replica.state, replica.detail = "starting", ""
        replica.ready_failures = replica.live_failures = 0
        replica.ready_probe_at = replica.live_probe_at = 0.0

    def _command(self, key: VersionKey, spec: VersionSpec) -> list[str]:
        project, model, version = key
        argv = [
            sys.executable, "-m", "modelyard", "serve", "--name", model, "--port", "0",
            "--host", self.host, "--announce", f"{project}/{model}/{version}",
            "--log-level", "warning", "--drain-grace", f"{self.drain_grace_s:g}",
        ]  # fmt: skip
        options = {
            "--max-batch-size": spec.batching.max_batch_size,
            "--max-latency-ms": spec.batching.max_latency_ms,
            "--intra-op-threads": spec.server.intra_op_threads,
            "--max-queue": spec.server.max_queue,
            "--control-url": self.control_url,
            # Always said: a MODELYARD_DEVICE this process inherited must not pick the replica's device.
            "--device": "cuda" if spec.resources.gpu else "cpu",
        }
        for flag, value in options.items():
            if value is not None:
                argv += [flag, str(value)]
        return [*argv, "--", spec.uri]  # after "--": a uri can never be read as an option

    def _environment(self, spec: VersionSpec, replica: int = 0) -> dict[str, str]:
        # The operator's control-plane token and gateway key stay here: model code reads its
        # environment. A replica that announces over REST needs a token to heart-beat, so that one
        # passes this process's MODELYARD_TOKEN on (it should be a deployer's, not an admin's).
        withheld = {"MODELYARD_API_KEY"} if self.control_url else {"MODELYARD_TOKEN", "MODELYARD_API_KEY"}
        inherited = {name: value for name, value in os.environ.items() if name not in withheld}
        env = {**inherited, **self.home_env}
        gpus = replica_gpus(host_gpus(env), spec.resources.gpu, replica) if spec.resources.gpu else None
        if gpus is not None:
            env[VISIBLE] = gpus
        env |= spec.server.env  # a CUDA_VISIBLE_DEVICES the spec sets wins over the share-out
        # Last, so that a replica always announces into (and resolves registry references from)
        # the control plane this target reads, never one it inherited by accident.
        control = {
            "MODELYARD_HOME": str(self.control.home),
            "MODELYARD_REGISTRY_DB": self.control.database_url,
            "MODELYARD_ARTIFACTS": self.control.artifact_url,
            "MODELYARD_CONTROL_URL": self.control_url,
            "MODELYARD_REGISTRY_URL": None,  # the deprecated name of the one above: never inherited
            # The replica drains and exits if this process dies without stopping it (_process.py's lifeline).
            PARENT_ENV: str(os.getpid()),
        }
        for name, value in control.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise RuntimeError("this LocalTarget is closed")

    # -- the supervisor ----------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._closed.wait(_TICK_S):
            with self._lock:
                replicas = [r for version in self._versions.values() for r in version.replicas]
            self._tick_routes = None  # the routing table is read at most once per tick
            for replica in replicas:
                try:
                    self._tick(replica)
                except Exception:  # one replica's trouble must not end the supervision of the others
                    log.exception("supervising replica %s of %s", replica.id, "/".join(replica.key))

    def _tick(self, replica: Replica) -> None:
        with self._lock:
            state, process = replica.state, replica.process
            if state in ("stopping", "failed"):
                return
            if state == "restarting":
                if time.monotonic() >= replica.restart_at and not self._closed.is_set():
                    self._spawn(replica)
                return
        if process is None or not process.alive:
            self._died(replica, process)
        elif process.url is not None:
            self._probe(replica, process)

    def _died(self, replica: Replica, process: Process | None) -> None:
        """Restart a replica that was ready once (with back-off); mark a never-ready one failed."""
        code = process.popen.poll() if process is not None else None
        tail = process.stderr_tail() if process is not None else ""
        now = time.monotonic()
        with self._lock:
            if replica.state == "stopping" or replica.process is not process:
                return  # stopped on purpose (or restarted) meanwhile
            stderr = f"; stderr: {tail}" if tail else ""
            if not replica.was_ready:
                replica.state = "failed"
                replica.detail = f"exited with code {code} before it was ready{stderr}"
                return
            replica.detail = f"exited with code {code}{stderr}"
            if process is not None and now - process.started_at >= _STABLE_S:
                replica.backoff.reset()
            replica.restart_at = now + replica.backoff.next(now)
            replica.restarts += 1
            replica.state = "restarting"
        log.warning("replica %s of %s %s: restarting", replica.id, "/".join(replica.key), replica.detail)
        if process is not None and process.url is not None:  # gateways drop it now, not after its ttl
            self._call_routes("deregister", replica.key, process.url)

    def _probe(self, replica: Replica, process: Process) -> None:
        """Readiness of a starting replica every tick; readiness and liveness of a ready one."""
        if replica.state == "starting":
            self._probe_starting(replica, process)
        else:
            self._probe_ready(replica, process)

    def _probe_starting(self, replica: Replica, process: Process) -> None:
        probe = replica.spec.probes.readiness
        ok, failed = self._ready(f"{process.url}/health/ready", probe.timeout_s)
        routable = ok and (*replica.key, process.url) in self._routable()
        with self._lock:
            if replica.state != "starting" or replica.process is not process:
                return
            if failed:  # the server lives on, but a model that failed to load never gets ready
                replica.detail = f"model {', '.join(failed)} failed to load; stderr: {process.stderr_tail()}"
                if not replica.was_ready:  # ensure reports it and stops it
                    replica.state = "failed"
                    return
            replica.state = "ready" if routable else "starting"
            replica.was_ready = replica.was_ready or routable
            if routable or ok:
                replica.detail = "" if routable else "ready; waiting for its announcement"
        if failed:  # it served before: restart it, with back-off, like a replica that died
            log.warning("replica %s of %s: %s", replica.id, "/".join(replica.key), replica.detail)
            process.signal(signal.SIGKILL)

    def _probe_ready(self, replica: Replica, process: Process) -> None:
        probes, now = replica.spec.probes, time.monotonic()
        if now >= replica.ready_probe_at:
            replica.ready_probe_at = now + probes.readiness.period_s
            ok, _ = self._ready(f"{process.url}/health/ready", probes.readiness.timeout_s)
            replica.ready_failures = 0 if ok else replica.ready_failures + 1
            if replica.ready_failures >= probes.readiness.failure_threshold:
                with self._lock:
                    if replica.state == "ready" and replica.process is process:
                        replica.state, replica.detail = "starting", "no longer ready"
        if now >= replica.live_probe_at:
            replica.live_probe_at = now + probes.liveness.period_s
            try:
                ok = self._http.get(
                    f"{process.url}/health/live", timeout=probes.liveness.timeout_s
                ).is_success
            except httpx.HTTPError:
                ok = False
            replica.live_failures = 0 if ok else replica.live_failures + 1
            if replica.live_failures >= probes.liveness.failure_threshold:
                log.warning("replica %s of %s fails liveness: killing it", replica.id, "/".join(replica.key))
                process.signal(signal.SIGKILL)  # the next tick sees it dead and restarts it

    def _ready(self, url: str, timeout_s: float) -> tuple[bool, list[str]]:
        """``/health/ready``: whether it is ready, and the models it reports FAILED (never to be)."""
        try:
            response = self._http.get(url, timeout=timeout_s)
            models = response.json().get("models", {})
        except (httpx.HTTPError, ValueError, AttributeError):
            return False, []
        failed = (
            [name for name, state in models.items() if state == "FAILED"] if isinstance(models, dict) else []
        )
        return response.status_code == 200, failed

    # -- the routing table -------------------------------------------------------------------------

    def _routable(self) -> set[tuple[str, str, str, str]]:
        """``(project, model, version, url)`` of every replica the routing table lists as ready."""
        if self._tick_routes is None:
            try:
                endpoints = self._open_routes().endpoints()
                self._routes_failing = False
            except Exception as exc:  # the control plane is down: nothing new becomes ready
                if not self._routes_failing:  # once per outage, not ten times a second
                    log.warning("cannot read the routing table (will retry): %s", exc)
                self._routes_failing = True
                endpoints = []
            self._tick_routes = {(e.project, e.model, e.version, e.url) for e in endpoints if e.ready}
        return self._tick_routes

    def _open_routes(self) -> _Routes:
        with self._lock:
            if self._routes is None:
                if self.control_url:
                    from modelyard.routing.client import RouteClient

                    self._routes = RouteClient(self.control_url)
                else:
                    from modelyard.routing.store import RouteStore

                    self._routes = RouteStore.open(self.control)
            return self._routes

    def _call_routes(self, method: str, key: VersionKey, url: str, **kwargs: object) -> None:
        """A best-effort write on behalf of a replica (its own announcer or the ttl also gets there)."""
        try:
            getattr(self._open_routes(), method)(*key, url, **kwargs)
        except Exception as exc:
            log.warning("routing table %s of %s failed: %s", method, url, exc)


# Targets not closed yet: closed on a normal interpreter exit, so that no replica outlives it.
_OPEN: weakref.WeakSet[LocalTarget] = weakref.WeakSet()


@atexit.register
def _close_open_targets() -> None:
    for target in list(_OPEN):
        with contextlib.suppress(Exception):
            target.close()
