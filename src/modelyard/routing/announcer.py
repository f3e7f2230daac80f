"""A replica announcing itself to the gateways (endpoint discovery, seed R10).

``modelyard serve ... --announce mail/spam/v1`` runs an :class:`Announcer` beside the server: every
``interval_s`` it heart-beats ``(project, model, version, url, ready)`` into the routing table (the
local database, or a control plane over REST). Readiness comes from the server itself, so a
replica that is still loading or already draining is listed but gets no traffic; on a clean stop it
deregisters, and if it dies its entry expires after ``ttl_s`` (gateways drop it on their next poll).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from modelyard.errors import InvalidInput

__all__ = ["Announcer", "EndpointsAPI", "parse_target"]

log = logging.getLogger("modelyard.deploy")


class EndpointsAPI(Protocol):
    """The part of the routes API a replica needs (``RouteStore`` and ``RouteClient`` have it)."""

    def heartbeat(
        self, project: str, model: str, version: str, url: str, *, ready: bool = True, ttl_s: float = 10.0
    ) -> bool: ...

    def deregister(self, project: str, model: str, version: str, url: str) -> None: ...

    def close(self) -> None: ...


def parse_target(text: str) -> tuple[str, str, str]:
    """``project/model/version`` -> its three names; InvalidInput naming ``--announce`` otherwise."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise InvalidInput(
            f"--announce {text!r} must be project/model/version, e.g. mail/spam/v1", field="announce"
        )
    return parts[0], parts[1], parts[2]


class Announcer:
    """Heart-beats one replica on a daemon thread; :meth:`stop` deregisters it."""

    def __init__(
        self,
        api: EndpointsAPI,
        target: tuple[str, str, str],
        url: str,
        ready: Callable[[], bool],
        *,
        interval_s: float = 2.0,
        ttl_s: float = 6.0,
    ) -> None:
        self.api = api
        self.target = target
        self.url = url
        self.ready = ready
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-announcer", daemon=True)
        self._failing_since: float | None = None

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """One heartbeat now (the thread calls this every ``interval_s``)."""
        self.api.heartbeat(*self.target, self.url, ready=self.ready(), ttl_s=self.ttl_s)
        self.beats += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                if self._failing_since is not None:
                    log.warning("announcing %s again after an outage", self.url)
                self._failing_since = None
            except Exception as exc:  # the control plane is down: keep serving, keep trying
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("cannot announce %s (will retry): %s", self.url, exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        """Stop heart-beating and deregister (best effort: an expired entry goes away anyway)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 5)
        try:
            self.api.deregister(*self.target, self.url)
        except Exception as exc:
            log.warning("could not deregister %s (it will expire): %s", self.url, exc)
        finally:
            self.api.close()
