"""``JobRunner``: validation with nobody in the loop, run by the control plane in a thread of its own.

Each turn of its loop queues a job for every push and alias move a setup asks for
(:mod:`modelyard.validation.triggers`), then claims the oldest queued job (a compare-and-set: two
control planes never run the same one) and runs it: the candidate is the job's version, the
baseline the setup's alias, both fetched from the registry, then run on the setup's dataset by
:func:`~modelyard.validation.offline.run_validation`, exactly as ``modelyard validate`` runs them,
but in a child process (:mod:`modelyard.validation.job_child`): a model that crashes, exhausts the
memory or hangs takes down only that process, and one still running at the job's deadline
(``validation_job_timeout_s``) is killed and its job ends ``error``. The verdict it hands back is
recorded on the version here; on a pass, with ``promote_to``, that alias
moves to the version (``require_validation``, and a compare-and-set against the alias as it was
when the job started: a hand that moved it meanwhile wins).

While it runs, a job is leased: a heartbeat renews the lease and saves the log. A control plane
that stops kills the child and puts its job back in the queue; one that dies leaves a lease that
lapses (its child follows it: the lifeline of :mod:`modelyard._process`), and the next runner to
look queues the job again (at once, if it is the same control plane restarted: same
runner name).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from modelyard.errors import Conflict, NotFound
from modelyard.registry.core import Registry
from modelyard.registry.types import ModelVersion, NewValidation, ValidationGate
from modelyard.validation import job_schema as s
from modelyard.validation.job_child import ChildRequest, ChildSide, NoVerdict, Stopped, one_line, run_child
from modelyard.validation.job_store import JobStore, now
from modelyard.validation.setup import JobView, ValidationSetup, dataset_file
from modelyard.validation.triggers import poll_triggers

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


@dataclass
class _Ending:
    status: str
    reason: str = ""
    validation_id: int | None = None
    promotion: str | None = None


class _Log:
    """A job's log, in memory: lines with the time, and the progress of the rows every few seconds
    (the child's :class:`~modelyard.validation.job_child.Listener`)."""

    def __init__(self, previous: str) -> None:
        self.text = previous
        self.rows = 0
        self.total = 0
        self._said = time.monotonic()

    def line(self, message: str) -> None:
        self.text += f"{now():%H:%M:%S} {message}\n"

    def expect(self, total: int) -> None:
        self.total = total

    def progress(self, rows: int) -> None:
        """Count ``rows`` more, said in the log every five seconds or so."""
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
        deadline_s: how long a job's validation may run before it is killed and ends ``error``
            (default: the settings' ``validation_job_timeout_s``).
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
        deadline_s: float | None = None,
    ) -> None:
        self.store, self.registry = store, registry
        self.poll_s, self.lease_s, self.max_attempts = poll_s, lease_s, max_attempts
        self.name = (name or runner_name())[:64]
        self.max_data_bytes = max_data_bytes or registry.settings.max_upload_bytes
        self.deadline_s = deadline_s or registry.settings.validation_job_timeout_s
        self.allow_private = registry.settings.allow_private_datasets
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
        """Stop now: the current job's child process is killed and the job goes back to the queue."""
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
        record = _Log(job.log or "")
        record.line(
            f"job {job.id} (attempt {job.attempts}) on {self.name}: {job.name}/{job.version}, {job.trigger}"
        )
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, record, done), daemon=True)
        beat.start()
        ending: _Ending | None = None
        try:
            ending = self._execute(job, record)
        except Stopped:
            record.line("the control plane is stopping: back to the queue")
        except NoVerdict as exc:  # the child's error, crash or deadline: the control plane is fine
            log.warning("validation job %s: %s", job.id, exc.reason)
            ending = _Ending(s.ERROR, exc.reason)
        except Exception as exc:
            log.exception("validation job %s failed", job.id)
            ending = _Ending(s.ERROR, one_line(exc))
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
        done = self._validate(setup, candidate, baseline, given, record)
        verdict = NewValidation.model_validate(done["verdict"])
        recorded = self.registry.record_validation(job.name, job.version, verdict)
        gates: list[dict[str, str]] = done["gates"]
        for gate in gates:
            record.line(f"  {gate['outcome']:<12} {gate['gate']}: {gate['reason']}")
        record.line(f"verdict {verdict.outcome}, recorded on {candidate.ref} (validation {recorded.id})")
        unmet = "; ".join(f"{g['gate']}: {g['reason']}" for g in gates if g["outcome"] != "pass")
        ending = _Ending(_STATUS[verdict.outcome], unmet[:500], recorded.id)
        if verdict.outcome == "pass" and setup.promote_to:
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
    ) -> dict[str, Any]:
        """Copy the dataset and fetch both versions (a stop asked meanwhile fetches no more), then
        validate in a child process; what it hands back (:func:`~.job_child.run_child`). The copy is
        made here: a ``memory://`` dataset lives in this process, and the registry's fetch is ours."""
        with dataset_file(setup.dataset, self.max_data_bytes, self.allow_private) as data:
            cand = self._side(candidate.ref, candidate)
            base = self._side(given, baseline)
            self._checkpoint()
            request = ChildRequest(
                data=str(data.resolve()), dataset=setup.dataset, labels=setup.labels, output=setup.output,
                policy=setup.policy, candidate=cand, baseline=base, user=VALIDATOR,
            )  # fmt: skip
            return run_child(request, record, stopping=self._stop, deadline_s=self.deadline_s)

    def _checkpoint(self) -> None:
        if self._stop.is_set():
            raise Stopped

    def _side(self, given: str, version: ModelVersion) -> ChildSide:
        self._checkpoint()
        path = self.registry.fetch(version.ref)
        return ChildSide(
            given=given, ref=version.ref, path=str(path.resolve()), name=version.name,
            version=version.version, sha256=version.sha256,
        )  # fmt: skip

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
