"""``JobRunner``: validation with nobody in the loop, run by the control plane in a thread of its own.

Each turn of its loop queues a job for every push and alias move a setup asks for
(:mod:`modelyard.validation.triggers`), then claims the oldest queued job (a compare-and-set: two
control planes never run the same one) and runs it: the candidate is the job's version, the
baseline the setup's alias, both fetched from the registry and run in-process on the setup's
dataset by :func:`~modelyard.validation.offline.run_validation`, exactly as ``modelyard validate``
runs them. The verdict is recorded on the version; on a pass, with ``promote_to``, that alias
moves to the version (``require_validation``, and a compare-and-set against the alias as it was
when the job started: a hand that moved it meanwhile wins).

While it runs, a job is leased: a heartbeat renews the lease and saves the log. A control plane
that stops puts its job back in the queue; one that dies leaves a lease that lapses, and the next
runner to look queues the job again (at once, if it is the same control plane restarted: same
runner name).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.package.loading import spec_from_path
from modelyard.registry.core import Registry
from modelyard.registry.types import ModelVersion, NewValidation, ValidationGate
from modelyard.validation import job_schema as s
from modelyard.validation.data import load_dataset
from modelyard.validation.job_store import JobStore, now
from modelyard.validation.offline import Report, Subject, run_validation
from modelyard.validation.setup import JobView, ValidationSetup, dataset_file
from modelyard.validation.triggers import poll_triggers
from modelyard.validation.verdicts import verdict_of

__all__ = ["VALIDATOR", "JobRunner", "runner_name"]

log = logging.getLogger("modelyard.validation")

VALIDATOR = "validator"  # who the verdicts and the alias moves of jobs are recorded as
_STATUS = {"pass": s.PASSED, "fail": s.FAILED, "inconclusive": s.INCONCLUSIVE}


def runner_name(address: str = "", port: int = 0) -> str:
    """This control plane's name on the jobs it runs: the machine and the address it listens on
    when the port is fixed (only one live process can hold it, and a restarted control plane
    knows its own jobs by it), else one unique to this process."""
    host = socket.gethostname()[:30]
    return f"{host}:{address[:20]}:{port}" if port else f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Stopping(Exception):
    """Raised inside a job when the runner is asked to stop: the job goes back to the queue."""


@dataclass
class _Ending:
    status: str
    reason: str = ""
    validation_id: int | None = None
    promotion: str | None = None


class _Log:
    """A job's log, in memory: lines with the time, and the progress of the rows every few seconds."""

    def __init__(self, previous: str, stopping: threading.Event) -> None:
        self.text = previous
        self.stopping = stopping
        self.rows = 0
        self.total = 0
        self._said = time.monotonic()

    def line(self, message: str) -> None:
        self.text += f"{now():%H:%M:%S} {message}\n"

    def progress(self, rows: int) -> None:
        """Count ``rows`` more; a stop asked meanwhile ends the job here (0 rows: just a checkpoint)."""
        if self.stopping.is_set():
            raise _Stopping
        self.rows += rows
        if time.monotonic() - self._said >= 5:
            self._said = time.monotonic()
            self.line(f"{self.rows}/{self.total} rows")


class JobRunner:
    """Runs validation jobs from ``store`` against ``registry``, one at a time, in a thread.

    Args:
        poll_s: how often it looks for new triggers and queued jobs.
        lease_s: how long a job it runs stays its own without a heartbeat.
        max_attempts: tries before a job whose control plane keeps dying is given up (``error``).
        name: this runner's name on its jobs (:func:`runner_name`).
        max_data_bytes: the largest dataset copied from a URL.
    """

    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        *,
        poll_s: float = 1.0,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        name: str | None = None,
        max_data_bytes: int | None = None,
    ) -> None:
        self.store, self.registry = store, registry
        self.poll_s, self.lease_s, self.max_attempts = poll_s, lease_s, max_attempts
        self.name = (name or runner_name())[:64]
        self.max_data_bytes = max_data_bytes or registry.settings.max_upload_bytes
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0

    # -- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Queue again what this runner's name left running (it restarted), then loop in a thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="validation-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job: it goes back to the queue at its next batch of rows."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look now rather than at the next poll (a job was just queued by hand)."""
        self._wake.set()

    def _loop(self) -> None:
        self._requeue_own()
        while not self._stop.is_set():
            try:
                busy = self.run_once() is not None
            except Exception:  # the database went away for a moment: log it, try again later
                log.exception("validation jobs: a turn of the loop failed")
                busy = False
            if not busy:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _requeue_own(self) -> None:
        try:
            for job in self.store.requeue_runner(self.name, self.max_attempts):
                log.info("validation job %s queued again: this control plane restarted while running it", job)
        except Exception:
            log.exception("validation jobs: could not queue this runner's interrupted jobs again")

    def run_once(self) -> JobView | None:
        """One turn: queue new triggers, queue lapsed jobs again, run the oldest queued job (if
        any); the job as it ended, or None when there was none."""
        poll_triggers(self.store.engine)
        if time.monotonic() - self._last_sweep >= min(self.lease_s, 30.0):
            self._last_sweep = time.monotonic()
            self.store.requeue_lapsed(self.max_attempts)
        job = self.store.claim(self.name, self.lease_s)
        if job is None:
            return None
        self.run_job(job)
        return self.store.get_job(job.id)

    # -- one job ----------------------------------------------------------------------------------

    def run_job(self, job: JobView) -> None:
        """Run a job this runner has claimed, its lease renewed meanwhile, and record how it ended."""
        record = _Log(job.log or "", self._stop)
        record.line(
            f"job {job.id} (attempt {job.attempts}) on {self.name}: {job.name}/{job.version}, {job.trigger}"
        )
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, record, done), daemon=True)
        beat.start()
        ending: _Ending | None = None
        try:
            ending = self._execute(job, record)
        except _Stopping:
            record.line("the control plane is stopping: back to the queue")
        except Exception as exc:
            log.exception("validation job %s failed", job.id)
            ending = _Ending(s.ERROR, _one_line(exc))
        finally:
            done.set()
            beat.join()
        if ending is None:
            self.store.release(job.id, self.name, record.text)
            return
        record.line(f"{ending.status}{': ' + ending.reason if ending.reason else ''}")
        fields = {"reason": ending.reason[:2000], "validation_id": ending.validation_id,
                  "promotion": ending.promotion, "log": record.text}  # fmt: skip
        if not self.store.finish(job.id, self.name, ending.status, **fields):
            log.warning("validation job %s was taken over by another control plane meanwhile", job.id)

    def _heartbeat(self, job: JobView, record: _Log, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                if not self.store.renew(job.id, self.name, self.lease_s, record.text):
                    log.warning("validation job %s: lease lost", job.id)
            except Exception:
                log.exception("validation job %s: could not renew the lease", job.id)

    def _execute(self, job: JobView, record: _Log) -> _Ending:
        try:
            setup = self.store.get_setup(job.name)
            candidate = self.registry.get_version(job.name, job.version)
        except NotFound as exc:
            return _Ending(s.ERROR, exc.message)
        given = f"{job.name}@{setup.baseline}"
        try:
            baseline = self.registry.resolve(given)
        except NotFound:
            return self._no_baseline(job, setup, record)
        if baseline.sha256 == candidate.sha256:
            return _Ending(
                s.INCONCLUSIVE, f"the candidate is the baseline: {given} is {baseline.ref}, same artifact"
            )
        revision = self._revision(job.name, setup.promote_to)
        record.line(f"candidate {candidate.ref} against {given} ({baseline.ref}) on {setup.dataset}")
        report = self._validate(setup, candidate, baseline, given, record)
        verdict = verdict_of(report, user=VALIDATOR, dataset=setup.dataset)
        recorded = self.registry.record_validation(job.name, job.version, verdict)
        for gate in report.gates:
            record.line(f"  {gate.outcome.value:<12} {gate.gate}: {gate.reason}")
        record.line(f"verdict {report.outcome.value}, recorded on {candidate.ref} (validation {recorded.id})")
        unmet = "; ".join(f"{g.gate}: {g.reason}" for g in report.gates if g.outcome.value != "pass")
        ending = _Ending(_STATUS[report.outcome.value], unmet[:500], recorded.id)
        if report.outcome.value == "pass" and setup.promote_to:
            ending.promotion = self._promote(job, setup.promote_to, revision)
            record.line(ending.promotion)
        return ending

    def _validate(
        self,
        setup: ValidationSetup,
        candidate: ModelVersion,
        baseline: ModelVersion,
        given: str,
        record: _Log,
    ) -> Report:
        with dataset_file(setup.dataset, self.max_data_bytes) as path:
            dataset = load_dataset(path, setup.labels)
        record.total = dataset.rows
        record.line(f"{dataset.rows} rows ({dataset.format}, sha256 {dataset.sha256[:12]})")
        record.progress(0)  # a stop asked while the dataset was copied ends the job before the fetches
        cand = self._subject(f"{candidate.ref}", candidate)
        record.progress(0)
        base = self._subject(given, baseline)
        record.progress(0)
        run = run_validation(
            cand, base, dataset, setup.gates(), labels_output=setup.output, progress=record.progress
        )
        report = asyncio.run(run)
        record.line(f"{report.summary['rows']} rows in {report.seconds:.2f} s")
        return report

    def _subject(self, given: str, version: ModelVersion) -> Subject:
        path = self.registry.fetch(version.ref)
        spec = spec_from_path(str(path), name=version.name, version=str(version.version))
        return Subject(given, version.ref, spec, version.sha256, (version.name, version.version))

    def _no_baseline(self, job: JobView, setup: ValidationSetup, record: _Log) -> _Ending:
        """No version holds the baseline alias yet (a first push): nothing to compare with, said so
        on the version too (never a pass: a first version is promoted by hand)."""
        reason = f"no baseline: model '{job.name}' has no alias '{setup.baseline}'"
        gate = ValidationGate(gate="baseline", outcome="inconclusive", threshold=0, reason=reason)
        verdict = NewValidation(
            outcome="inconclusive", baseline=f"{job.name}@{setup.baseline} (none)",
            dataset=setup.dataset[:500], rows=0, policy=setup.policy, gates=[gate],
            figures={"reason": reason}, user=VALIDATOR,
        )  # fmt: skip
        recorded = self.registry.record_validation(job.name, job.version, verdict)
        record.line(f"{reason}: recorded as inconclusive (validation {recorded.id})")
        return _Ending(s.INCONCLUSIVE, reason, recorded.id)

    def _revision(self, name: str, alias: str | None) -> int:
        """The revision ``alias`` is at now (0: it does not exist), for the promotion's compare-and-set."""
        if alias is None:
            return 0
        try:
            return self.registry.get_alias(name, alias).revision
        except NotFound:
            return 0

    def _promote(self, job: JobView, alias: str, revision: int) -> str:
        """Move ``alias`` to the job's version, unless it moved since the job started or already
        points at a newer version; what happened, in words."""
        try:
            current = self.registry.get_alias(job.name, alias)
        except NotFound:
            current = None
        if current is not None and current.version >= job.version:
            return f"not promoted: {job.name}@{alias} already points at {current.version}"
        who = f"{VALIDATOR} for {job.requested_by}" if job.requested_by else VALIDATOR
        try:
            self.registry.set_alias(
                job.name, alias, job.version, user=who, expected_revision=revision, require_validation=True
            )
        except (Conflict, NotFound) as exc:
            return f"not promoted: {exc.message}"
        return f"promoted: {job.name}@{alias} -> {job.version}"


def _one_line(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
    return (message.strip().splitlines() or [type(exc).__name__])[0][:500]
