"""``DeployTarget``: where versions run. The local backend (``deploy/targets/local.py``:
``modelyard serve`` processes on this machine) is the embedded default; the Kubernetes target
(``deploy/targets/kubernetes/``) server-side applies the manifests ``manifests.py`` renders, which
GitOps tools can apply instead.

A target only runs replicas. Traffic is the gateway's business: replicas announce themselves
(``--announce``, ``routing/announcer.py``) and become routable once ready; the apply orchestrator
(``deploy/apply.py``) sets the weights only after :meth:`DeployTarget.ensure` returned.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from modelyard.deploy.spec import VersionSpec

__all__ = ["DeployTarget", "ReplicaStatus", "VersionKey"]

VersionKey = tuple[str, str, str]  # (project, model, version)


@dataclasses.dataclass(frozen=True)
class ReplicaStatus:
    """One replica as its target sees it."""

    project: str
    model: str
    version: str
    replica: str  # an id unique within the version ("0", "1", ... or a pod name)
    url: str | None  # where it serves, once it does
    state: str  # "starting", "ready", "failed", "stopping", "restarting"
    restarts: int = 0
    detail: str = ""


class DeployTarget(Protocol):
    """Runs the replicas of versions; every method is synchronous and may take a while."""

    def ensure(self, key: VersionKey, spec: VersionSpec, *, timeout_s: float = 300.0) -> None:
        """Make ``key`` run as ``spec`` says, and return once every replica of it is ready.

        Idempotent: an unchanged spec that is already running returns at once. A changed spec is a
        rolling update: new replicas start, and old ones are drained and stopped only once the new
        ones are ready. Raises (leaving the old replicas serving) when the new ones fail to become
        ready within ``timeout_s``."""

    def remove(self, key: VersionKey) -> None:
        """Drain and stop every replica of ``key`` (nothing happens if none runs)."""

    def status(self) -> list[ReplicaStatus]:
        """Every replica this target runs."""

    def close(self) -> None:
        """Stop supervising; the local target also stops its processes."""
