"""The rollout controller: a loop in the control plane that moves every active rollout on, reading
and writing its state only through the database.

Each tick (about twice a second) it takes the lease (one control plane drives at a time), then for
every running, paused or halted rollout:

1. puts the route's traffic where the state in the database says (``plan.wanted``): a state
   written by a control plane that died before it wrote the traffic is completed here;
2. reads the evidence (:class:`~modelyard.validation.evidence.Evidence`), the route's answers
   compared as the rollout's ``compare`` says: cumulative figures, diffed against the snapshot the
   step's window started from. Unreadable evidence makes the gates inconclusive; unreadable for
   longer than ``evidence_timeout`` is a failure. Counters below the snapshot (the analysis
   restarted empty, or compares another way) restart the step's window;
3. decides: an error-rate or agreement gate failing on enough evidence fails the step at once, a
   p99 gate only at the step's end (``gates.AT_END``); at the step's end a pass goes on (after the
   last step: 100 % to the candidate, the baseline at weight 0, kept ready for the hold);
   inconclusive waits up to ``INCONCLUSIVE_GRACE`` times the step more, then fails.
   Failure sends traffic back to the baseline (``on_failure: rollback``) or holds it there and
   waits for a person (``pause``); the candidate keeps its replicas, at weight 0, for inspection.

Every decision is a compare-and-set on the rollout's row with an event holding its figures, so a
restarted control plane resumes each step where it was, and ``deploy promote | abort | pause |
resume | retry`` (by a person, recorded under their token's name) cannot race the loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from modelyard.deploy.spec import Deployment, Rollout
from modelyard.errors import Conflict, NotFound
from modelyard.rollout import schema as s
from modelyard.rollout.gates import Reading, fell, read_hold, read_step, stats_from, stats_to
from modelyard.rollout.plan import (
    INCONCLUSIVE_GRACE,
    baseline_share,
    bounds_s,
    compare_policy,
    describe_step,
    describe_steps,
    rollout_of,
    wanted,
)
from modelyard.rollout.preflight import refusal
from modelyard.rollout.store import RolloutRecord, RolloutStore
from modelyard.routing.table import ModelRoute
from modelyard.validation.evidence import Evidence, VersionStats

__all__ = ["CONTROLLER", "Applied", "Controller", "TrafficAPI", "fingerprint"]

log = logging.getLogger("modelyard.rollout")

CONTROLLER = "controller"  # the actor of automatic decisions
TICK_S = 0.5
LEASE_S = 6.0  # a control plane killed mid-rollout is replaced after at most this long
Clock = Callable[[], datetime]
# The last applied deploy file's deployment of a model, None when it has none: what a retry rolls
# out again (the control plane reads it from the deploy history; the rollout plane never parses files).
Applied = Callable[[str, str], Deployment | None]


class TrafficAPI(Protocol):
    """The routing-table calls the controller makes (``RouteStore`` has them)."""

    def get(self, project: str, model: str) -> ModelRoute: ...

    def set_weights(
        self, project: str, model: str, weights: Mapping[str, int], *, replace: bool = True
    ) -> ModelRoute: ...

    def set_mirror(self, project: str, model: str, version: str, fraction: float = 1.0) -> ModelRoute: ...

    def clear_mirror(self, project: str, model: str, version: str) -> ModelRoute: ...


def fingerprint(deployment: Deployment) -> str:
    """The candidate's name and whole spec, hashed: the same file applied again is the same rollout."""
    candidate = deployment.rollout_version
    assert candidate is not None
    spec = candidate.spec.model_dump(mode="json", by_alias=True)
    text = json.dumps({"version": candidate.version, "spec": spec}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class _Window:
    """A step's evidence so far: None in ``reading`` when it cannot be read now."""

    reading: Reading | None
    current: dict[str, Any] | None  # today's cumulative figures, as a snapshot would hold them


class Controller:
    """Drives rollouts from the database (see the module doc); also what ``deploy apply`` hands a
    version with a ``rollout`` to (the deploy plane's ``Rollouts`` protocol)."""

    def __init__(
        self,
        store: RolloutStore,
        routes: TrafficAPI,
        evidence: Evidence | None,
        *,
        clock: Clock = _utcnow,
        lease_s: float = LEASE_S,
        holder: str | None = None,
        applied: Applied | None = None,
    ) -> None:
        self.store = store
        self.routes = routes
        self.evidence = evidence
        self.applied = applied
        self.clock = clock
        self.lease_s = lease_s
        self.holder = holder or uuid.uuid4().hex[:16]
        self._lock = threading.RLock()  # the loop and the REST threads act one at a time
        self._leased_until: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what deploy apply asks ---------------------------------------------------------------------

    def cannot_run(self, deployment: Deployment) -> str | None:
        """Why this control plane cannot roll the deployment's candidate out, or None."""
        return None if self.steering(deployment) else self._unfit(deployment)

    def _unfit(self, deployment: Deployment) -> str | None:
        if self.evidence is None:
            return "this control plane has no online analysis of the gateway's log to read gates from"
        return refusal(deployment, self._route(deployment.project, deployment.model))

    def steering(self, deployment: Deployment) -> bool:
        """Whether the model's newest rollout is this very one (any state but superseded)."""
        latest = self.store.latest(deployment.project, deployment.model)
        return (
            latest is not None
            and latest.state != s.SUPERSEDED
            and latest.fingerprint == fingerprint(deployment)
        )

    def start(self, deployment: Deployment, *, user: str) -> str:
        """Record a new rollout at its first step and set that step's traffic; a line for the log."""
        record = self._begin(deployment, user)
        spec, (low, high) = record.spec, bounds_s(record.spec)
        steps = f"{len(spec.steps)} steps: {describe_steps(spec)}"
        return (
            f"rollout #{record.id}: {record.candidate} from {spec.baseline} ({spec.strategy}, {steps}); "
            f"done in {low:g}s to {high:g}s unless a gate fails"
        )

    def _begin(self, deployment: Deployment, user: str, why: str = "") -> RolloutRecord:
        """A new rollout at its first step, its window counted from now, and that step's traffic."""
        candidate, spec = deployment.rollout_version, rollout_of(deployment)
        assert candidate is not None
        with self._lock:
            self.stop(deployment.project, deployment.model, user=user, reason="superseded by a new rollout")
            now = self.clock()
            snapshot = self._figures(deployment.project, deployment.model, candidate.version, spec)
            values = {
                "project": deployment.project, "model": deployment.model,
                "candidate": candidate.version, "baseline": spec.baseline,
                "fingerprint": fingerprint(deployment), "spec": spec,
                "baseline_weight": baseline_share(deployment), "state": s.RUNNING, "step": 0,
                "step_started_at": now, "blind_since": None, "snapshot": snapshot,
            }  # fmt: skip
            reason = f"{why}{spec.strategy}: {describe_steps(spec)}"
            record = self.store.create(values, at=now, actor=user, reason=reason)
            self._apply_traffic(record)
            return record

    def stop(self, project: str, model: str, *, user: str, reason: str) -> str | None:
        """Supersede the model's active rollout, if any (traffic left to the caller)."""
        with self._lock:
            latest = self.store.latest(project, model)
            if latest is None or not latest.active:
                return None
            step = describe_step(latest.spec, latest.step)
            self.store.change(
                latest, at=self.clock(), actor=user, event="superseded", reason=reason, state=s.SUPERSEDED
            )
        return f"rollout #{latest.id} of {latest.candidate} superseded at step {step}"

    # -- by hand: deploy promote | abort | pause | resume | retry ----------------------------------

    def promote(self, project: str, model: str, *, user: str, reason: str = "") -> RolloutRecord:
        """Skip the remaining steps: 100 % to the candidate now (the hold, if any, still follows;
        promoting during the hold ends it)."""
        with self._lock:
            record, now = self._active(project, model), self.clock()
            why = _by_hand("promoted", reason)
            if record.step >= len(record.spec.steps):
                done = self.store.change(
                    record, at=now, actor=user, event="succeeded", reason=why, state=s.SUCCEEDED
                )
            else:
                done = self._promote(record, now, user, why)
            self._apply_traffic(done)
            return done

    def abort(self, project: str, model: str, *, user: str, reason: str = "") -> RolloutRecord:
        """Traffic back to the baseline now; the candidate stays at weight 0."""
        with self._lock:
            record = self._active(project, model)
            why = _by_hand("aborted", reason)
            done = self.store.change(
                record, at=self.clock(), actor=user, event="aborted", reason=why, state=s.ABORTED
            )
            self._apply_traffic(done)
            return done

    def pause(self, project: str, model: str, *, user: str, reason: str = "") -> RolloutRecord:
        """Hold the current step's traffic; gates are still watched (a failure still acts)."""
        with self._lock:
            record = self._active(project, model)
            if record.state != s.RUNNING:
                raise Conflict(f"rollout #{record.id} is already {record.state}", field="rollout")
            why = _by_hand("paused", reason)
            return self.store.change(
                record, at=self.clock(), actor=user, event="paused", reason=why, state=s.PAUSED
            )

    def resume(self, project: str, model: str, *, user: str, reason: str = "") -> RolloutRecord:
        """Go on from a pause (or a halt after a failure): the current step starts over, with a
        fresh evidence window and its full time."""
        with self._lock:
            record = self._active(project, model)
            if record.state == s.RUNNING:
                raise Conflict(f"rollout #{record.id} is running, not paused", field="rollout")
            now, why = self.clock(), _by_hand("resumed", reason)
            record = self.store.change(
                record, at=now, actor=user, event="resumed", reason=why, state=s.RUNNING,
                step_started_at=now, snapshot=self._figures_now(record), blind_since=None,
            )  # fmt: skip
            self._apply_traffic(record)
            return record

    def retry(self, project: str, model: str, *, user: str, reason: str = "") -> RolloutRecord:
        """Start the model's rolled-back or aborted rollout again, as the last applied deploy file
        still asks for it: a new rollout, from the first step with a fresh evidence window.
        :class:`Conflict` (naming the state) when there is nothing to retry or it is in progress."""
        with self._lock:
            latest = self.store.latest(project, model)
            if latest is None:
                raise NotFound(f"{project}/{model} has no rollout to retry", field="rollout")
            refused = _not_retryable(latest)
            if refused is not None:
                raise Conflict(refused, field="rollout")
            deployment = self._as_applied(latest)
            unfit = self._unfit(deployment)
            if unfit is not None:
                raise Conflict(f"rollout #{latest.id} cannot be retried: {unfit}", field="rollout")
            why = _by_hand(f"retry of rollout #{latest.id} ({latest.state})", reason)
            return self._begin(deployment, user, f"{why}; ")

    def _as_applied(self, record: RolloutRecord) -> Deployment:
        """The last applied file's deployment of ``record``'s model, if it still rolls out the same
        candidate with the same spec (:class:`Conflict` otherwise: a retry never invents a rollout)."""
        found = self.applied(record.project, record.model) if self.applied is not None else None
        if found is None or found.rollout_version is None or fingerprint(found) != record.fingerprint:
            raise Conflict(
                f"rollout #{record.id} cannot be retried: the last applied deploy file no longer rolls "
                f"{record.candidate} of {record.project}/{record.model} out as it did; apply a file "
                "with a rollout to start a new one",
                field="rollout",
            )
        return found

    def _active(self, project: str, model: str) -> RolloutRecord:
        latest = self.store.latest(project, model)
        if latest is None:
            raise NotFound(f"{project}/{model} has no rollout", field="rollout")
        if not latest.active:
            raise Conflict(
                f"rollout #{latest.id} of {project}/{model} has ended ({latest.state})", field="rollout"
            )
        return latest

    # -- the loop -----------------------------------------------------------------------------------

    def start_loop(self, interval_s: float = TICK_S) -> None:
        """Tick in a thread of its own until :meth:`stop_loop`; the first tick runs at once, so
        every rollout a previous control plane left active is resumed."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="modelyard-rollouts", daemon=True
        )
        self._thread.start()

    def stop_loop(self, timeout_s: float = 5.0) -> None:
        """Stop ticking and give the lease up, so a restarted control plane resumes at once."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None
        if self._leased_until is not None:
            try:
                self.store.release(self.holder, self.clock())
            except Exception:  # the database is gone: the lease lapses by itself
                log.warning("could not release the rollout lease", exc_info=True)

    def _loop(self, interval_s: float) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a lost database: try again next tick
                log.exception("rollout tick failed")
            if self._stop.wait(interval_s):
                return

    def tick(self) -> None:
        """One pass over the active rollouts (see the module doc)."""
        records = self.store.active()
        if not records or not self._leased():
            return
        with self._lock:
            for record in records:
                try:
                    self._drive(self.store.get(record.id), self.clock())
                except Conflict:  # changed meanwhile (by hand): the next tick reads it again
                    continue
                except Exception:
                    log.exception("rollout #%d of %s/%s", record.id, record.project, record.model)

    def _leased(self) -> bool:
        now = self.clock()
        if self._leased_until is not None and (self._leased_until - now).total_seconds() > self.lease_s / 2:
            return True
        if not self.store.lease(self.holder, now, self.lease_s):
            self._leased_until = None
            return False
        self._leased_until = now + timedelta(seconds=self.lease_s)
        return True

    # -- one rollout, one tick --------------------------------------------------------------------

    def _drive(self, record: RolloutRecord, now: datetime) -> None:
        self._apply_traffic(record)
        if record.state == s.HALTED:
            return  # baseline only: nothing to watch until a person acts
        blindness = self.blindness()
        if blindness is not None:
            self._blind(record, now, blindness)
            return
        if record.blind_since is not None:
            record = self.store.change(
                record, at=now, actor=CONTROLLER, event="evidence_back",
                reason="the analysis reads the log again", blind_since=None,
            )  # fmt: skip
        window = self._window(record)
        if window.reading is None:  # no snapshot yet, or one the analysis's counters fell below
            self._restart_window(record, now, window)
            return
        self._decide(record, now, window.reading)

    def _decide(self, record: RolloutRecord, now: datetime, reading: Reading) -> None:
        spec = record.spec
        holding = record.step >= len(spec.steps)
        duration = spec.hold_s if holding else spec.steps[record.step].duration
        elapsed = (now - record.step_started_at).total_seconds()
        figures = _figures(record, reading, elapsed)
        failures = reading.failures(ended=elapsed >= duration)  # a p99 is judged at the end only
        if failures:
            self._fail(record, now, f"{_where(record)} failed: {failures}", figures)
        elif record.state == s.PAUSED or elapsed < duration:
            return
        elif holding:
            why = f"the baseline was kept ready {duration:g}s; {record.candidate} serves everyone"
            self._to(record, now, "succeeded", why, figures, state=s.SUCCEEDED)
        elif reading.outcome == "pass":
            self._pass(record, now, figures)
        elif elapsed >= duration * (1 + INCONCLUSIVE_GRACE):
            self._fail(
                record,
                now,
                f"{_where(record)} inconclusive after {elapsed:.0f}s: {reading.missing()}",
                figures,
            )

    def _pass(self, record: RolloutRecord, now: datetime, figures: dict[str, Any]) -> None:
        why = f"{_where(record)} passed"
        if record.step + 1 < len(record.spec.steps):
            self._to(record, now, "advanced", why, figures, step=record.step + 1)
        else:
            self._promote(record, now, CONTROLLER, f"{why}: every step passed", figures)

    def _promote(
        self,
        record: RolloutRecord,
        now: datetime,
        actor: str,
        why: str,
        figures: dict[str, Any] | None = None,
    ) -> RolloutRecord:
        last = len(record.spec.steps)
        if record.spec.hold_s:
            why = f"{why}; 100% to {record.candidate}, {record.baseline} kept ready {record.spec.hold_s:g}s"
            return self._to(
                record, now, "promoted", why, figures or {}, step=last, state=s.RUNNING, actor=actor
            )
        why = f"{why}; 100% to {record.candidate}"
        return self._to(
            record, now, "promoted", why, figures or {}, step=last, state=s.SUCCEEDED, actor=actor
        )

    def _fail(self, record: RolloutRecord, now: datetime, why: str, figures: dict[str, Any]) -> None:
        if record.spec.on_failure == "pause":
            why = f"{why}; traffic back to {record.baseline}, waiting for promote or abort"
            self._to(record, now, "halted", why, figures, state=s.HALTED)
        else:
            why = f"{why}; traffic back to {record.baseline}, {record.candidate} kept at weight 0"
            self._to(record, now, "rolled_back", why, figures, state=s.ROLLED_BACK)

    def _to(
        self,
        record: RolloutRecord,
        now: datetime,
        event: str,
        why: str,
        figures: Mapping[str, Any],
        *,
        actor: str = CONTROLLER,
        **values: Any,
    ) -> RolloutRecord:
        """A transition: a new step starts a new window; the traffic follows at once."""
        if "step" in values:  # the snapshot may be None: taken once the evidence can be read
            values |= {"step_started_at": now, "snapshot": self._figures_now(record)}
        changed = self.store.change(
            record, at=now, actor=actor, event=event, reason=why, figures=figures, **values
        )
        self._apply_traffic(changed)
        log.info("rollout #%d of %s/%s: %s: %s", record.id, record.project, record.model, event, why)
        return changed

    # -- evidence ---------------------------------------------------------------------------------

    def blindness(self) -> str | None:
        """Why the evidence cannot be read now, or None when it can. A log that is read but holds
        nothing of the route is readable: its gates are inconclusive for want of requests, which
        the step's grace judges, not ``evidence_timeout``."""
        if self.evidence is None:
            return "this control plane has no online analysis"
        if self.evidence.healthy():
            return None
        # The online analysis says what it cannot read, and why (``OnlineAnalysis.problem``, e.g. no
        # gateway has written the log yet); a stand-in evidence may not.
        problem = getattr(self.evidence, "problem", None)
        detail = f": {problem}" if isinstance(problem, str) and problem else ""
        return f"the analysis cannot read the gateway's log{detail}"

    def _blind(self, record: RolloutRecord, now: datetime, blindness: str) -> None:
        """The gates cannot be read: inconclusive, until ``evidence_timeout`` makes it a failure."""
        if record.blind_since is None:
            self.store.change(
                record, at=now, actor=CONTROLLER, event="evidence_lost", blind_since=now,
                reason=f"{blindness}: the gates are inconclusive",
            )  # fmt: skip
            return
        blind = (now - record.blind_since).total_seconds()
        if blind >= record.spec.evidence_timeout:
            why = f"the gates could not be read for {blind:.0f}s ({blindness})"
            self._fail(record, now, why, {"blind_s": blind})

    def _figures_now(self, record: RolloutRecord) -> dict[str, Any] | None:
        return self._figures(record.project, record.model, record.candidate, record.spec)

    def _figures(self, project: str, model: str, candidate: str, spec: Rollout) -> dict[str, Any] | None:
        """The candidate's and the baseline's cumulative figures now, as a snapshot holds them, the
        answers compared as ``spec`` says (set each time: a restarted analysis forgets); None when
        the evidence cannot be read."""
        if self.evidence is None:
            return None
        self.evidence.compare_with(project, model, compare_policy(spec))
        if not self.evidence.healthy():
            return None
        stats, empty = self.evidence.stats(project, model, baseline=spec.baseline), VersionStats()
        return {
            "candidate": stats_to(stats.get(candidate, empty)),
            "baseline": stats_to(stats.get(spec.baseline, empty)),
        }

    def _window(self, record: RolloutRecord) -> _Window:
        """The step's reading since its snapshot (None without a usable one)."""
        current = self._figures_now(record)
        if current is None or record.snapshot is None:
            return _Window(None, current)
        deltas: list[VersionStats] = []
        for side in ("candidate", "baseline"):
            now, then = stats_from(current[side]), stats_from(record.snapshot.get(side))
            if now is None or then is None or fell(now.since(then)):
                return _Window(None, current)
            deltas.append(now.since(then))
        candidate, baseline = deltas
        if record.step >= len(record.spec.steps):
            return _Window(read_hold(record.spec.gates, candidate, baseline), current)
        step = record.spec.steps[record.step]
        return _Window(read_step(step, record.spec.gates, candidate, baseline), current)

    def _begin_window(self, record: RolloutRecord, now: datetime) -> RolloutRecord:
        """Snapshot the evidence as the step's window starts (later, when it cannot be read now)."""
        current = self._figures_now(record)
        if current is None:
            return record
        return self.store.change(
            record, at=now, actor=CONTROLLER, event="window", snapshot=current, step_started_at=now,
            reason=f"evidence for {_where(record)} counted from now",
        )  # fmt: skip

    def _restart_window(self, record: RolloutRecord, now: datetime, window: _Window) -> None:
        if window.current is None:
            return
        if record.snapshot is None:  # the step began while the evidence could not be read
            self._begin_window(record, now)
            return
        why = (
            f"the analysis's counters fell below {_where(record)}'s snapshot (it restarted empty, or "
            "compares answers another way): the step's evidence and time start again"
        )
        self.store.change(
            record, at=now, actor=CONTROLLER, event="window_restarted", reason=why,
            snapshot=window.current, step_started_at=now,
        )  # fmt: skip

    # -- traffic ----------------------------------------------------------------------------------

    def _route(self, project: str, model: str) -> ModelRoute | None:
        try:
            return self.routes.get(project, model)
        except NotFound:
            return None

    def _apply_traffic(self, record: RolloutRecord) -> None:
        """Make the route's candidate and baseline traffic what the state wants (writes only what
        differs): weights first, so a rollback takes effect in one write."""
        want = wanted(record.spec, record.state, record.step, record.baseline_weight)
        if want is None:
            return
        route = self._route(record.project, record.model)
        if route is None:
            log.warning("rollout #%d: %s/%s has no route any more", record.id, record.project, record.model)
            return
        if _weights(route, record) != (want.candidate, want.baseline):
            weights = {record.candidate: want.candidate, record.baseline: want.baseline}
            route = self.routes.set_weights(record.project, record.model, weights, replace=False)
        if _mirror(route, record.candidate) != want.mirror:
            if want.mirror is None:
                self.routes.clear_mirror(record.project, record.model, record.candidate)
            else:
                self.routes.set_mirror(record.project, record.model, record.candidate, want.mirror)

    # -- what status shows ------------------------------------------------------------------------

    def reading(self, record: RolloutRecord) -> Reading | None:
        """The current step's gates now, from its window; None when they cannot be read."""
        return self._window(record).reading


def _weights(route: ModelRoute, record: RolloutRecord) -> tuple[int | None, int | None]:
    candidate, baseline = route.version(record.candidate), route.version(record.baseline)
    return (
        candidate.weight if candidate is not None else None,
        baseline.weight if baseline is not None else None,
    )


def _mirror(route: ModelRoute, version: str) -> float | None:
    found = route.version(version)
    return found.mirror_fraction if found is not None and found.mirror else None


def _where(record: RolloutRecord) -> str:
    if record.step >= len(record.spec.steps):
        return "the hold after promotion"
    return f"step {record.step + 1}/{len(record.spec.steps)} ({describe_step(record.spec, record.step)})"


def _not_retryable(record: RolloutRecord) -> str | None:
    """Why ``record`` (the model's newest rollout) cannot be retried, or None."""
    where = f"rollout #{record.id} of {record.project}/{record.model}"
    if record.state in s.RETRYABLE:
        return None
    if record.state == s.SUCCEEDED:
        return f"{where} succeeded: {record.candidate} has the traffic already; nothing to retry"
    if record.state == s.SUPERSEDED:
        return f"{where} was superseded by a later apply; nothing to retry"
    then = "resume or abort it" if record.state == s.HALTED else "abort it first to start over"
    return f"{where} is {record.state}, not ended: {then}"


def _by_hand(what: str, reason: str) -> str:
    return f"{what} by hand" + (f": {reason}" if reason else "")


def _figures(record: RolloutRecord, reading: Reading, elapsed: float) -> dict[str, Any]:
    return {"step": record.step, "elapsed_s": round(elapsed, 3), **reading.to_dict()}
