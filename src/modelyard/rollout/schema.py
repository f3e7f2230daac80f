"""The rollouts in the control-plane database (SQLAlchemy Core; ``v0008_rollouts.py`` creates them).

- ``rollouts``: one row per rollout: the candidate, its baseline, the rollout block as applied, and
  the state the controller drives: which step, since when, the evidence snapshot the step's window
  started from. Everything the controller needs to go on after a restart is here, nowhere else.
  ``uq_rollouts_active`` is a partial unique index: at most one rollout per model is active
  (running, paused or halted), whatever two writers read before.
- ``rollout_events``: every transition, who made it (a token's name, or ``controller``), why, and
  the figures that caused it: what ``deploy history`` and ``deploy status`` show.
- ``rollout_lease``: one row: which control plane drives the rollouts, until when. A second control
  plane on the same database waits for the lease to lapse before it acts.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from modelyard.control.db import metadata

__all__ = [
    "ABORTED",
    "ACTIVE",
    "ENDED",
    "HALTED",
    "NAME_LENGTH",
    "PAUSED",
    "RETRYABLE",
    "ROLLED_BACK",
    "RUNNING",
    "SUCCEEDED",
    "SUPERSEDED",
    "USER_LENGTH",
    "events",
    "lease",
    "rollouts",
]

RUNNING = "running"  # the controller moves it on by itself
PAUSED = "paused"  # held where it is by hand (failures still roll it back)
HALTED = "halted"  # failed with on_failure: pause: baseline only, waiting for promote or abort
SUCCEEDED = "succeeded"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"
SUPERSEDED = "superseded"  # a later apply changed or dropped it; traffic is the file's
ACTIVE = (RUNNING, PAUSED, HALTED)
ENDED = (SUCCEEDED, ROLLED_BACK, ABORTED, SUPERSEDED)
RETRYABLE = (ROLLED_BACK, ABORTED)  # ended short of promotion, the file unchanged: ``deploy retry``
NAME_LENGTH = 63  # as the routing table's names
USER_LENGTH = 200  # as the deploy history's ``user``

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(NAME_LENGTH), nullable=False),
    Column("model", String(NAME_LENGTH), nullable=False),
    Column("candidate", String(NAME_LENGTH), nullable=False),
    Column("baseline", String(NAME_LENGTH), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 of the candidate's name and spec
    Column("spec", JSON, nullable=False),  # the rollout block, durations in seconds
    Column("baseline_weight", Integer, nullable=False),  # the baseline's weight when it started
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False),  # index into the steps; len(steps): promoted
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    Column("snapshot", JSON, nullable=True),  # cumulative stats when the window started; None: not yet
    Column("blind_since", DateTime(timezone=True), nullable=True),  # the analysis unreadable since
    Column("reason", Text, nullable=False),  # why the last transition happened
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(USER_LENGTH), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("revision", Integer, nullable=False),  # grows with every write: compare-and-set
)
Index("ix_rollouts_model", rollouts.c.project, rollouts.c.model)
Index(
    "uq_rollouts_active",
    rollouts.c.project,
    rollouts.c.model,
    unique=True,
    sqlite_where=rollouts.c.state.in_(ACTIVE),
    postgresql_where=rollouts.c.state.in_(ACTIVE),
)

events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(USER_LENGTH), nullable=False),  # a token's name, or "controller"
    Column("event", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # the state it left the rollout in
    Column("step", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("figures", JSON, nullable=False),  # the gates' readings that caused it
)
Index("ix_rollout_events_rollout", events.c.rollout_id)

lease = Table(
    "rollout_lease",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
LEASE_ID = 1
