"""Deploy test helpers: a recording stand-in for our own ``DeployTarget`` protocol.

It runs nothing (the local backend's own tests start real ``modelyard serve`` processes); it lets
the apply orchestrator, the REST API and the CLI be tested for what they ask a target to do.
"""

from __future__ import annotations

from modelyard.deploy.backend import ReplicaStatus, VersionKey
from modelyard.deploy.spec import VersionSpec
from modelyard.errors import ModelNotReady


class RecordingTarget:
    """Runs nothing; remembers what it was asked, fails the versions it is told to."""

    def __init__(self) -> None:
        self.running: dict[VersionKey, VersionSpec] = {}
        self.calls: list[tuple[str, VersionKey]] = []
        self.fail: set[VersionKey] = set()

    def ensure(self, key: VersionKey, spec: VersionSpec, *, timeout_s: float = 300.0) -> None:
        self.calls.append(("ensure", key))
        if key in self.fail:
            raise ModelNotReady("/".join(key), "its replicas never became ready")
        self.running[key] = spec

    def remove(self, key: VersionKey) -> None:
        self.calls.append(("remove", key))
        self.running.pop(key, None)

    def status(self) -> list[ReplicaStatus]:
        return [ReplicaStatus(*key, replica="0", url=None, state="ready") for key in self.running]

    def close(self) -> None:
        self.running.clear()
