"""Child processes that stop when the process that started them is gone.

``modelyard up`` starts the gateway and the local backend's replicas in sessions of their own (so a
Ctrl-C reaches only ``up``, which stops them in order). If ``up`` itself is killed outright they would
go on serving with nobody to stop them; so ``up`` passes its pid in ``MODELYARD_PARENT_PID`` and each
child watches it, draining and exiting as on SIGTERM once its parent is gone.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["PARENT_ENV", "stop_with_parent", "watch_parent_from_env"]

PARENT_ENV = "MODELYARD_PARENT_PID"


def stop_with_parent(parent: int, interval_s: float = 0.5) -> None:
    """SIGTERM this process once its parent is no longer ``parent`` (it died; we were re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="modelyard-lifeline", daemon=True).start()


def watch_parent_from_env() -> None:
    """Start :func:`stop_with_parent` if ``MODELYARD_PARENT_PID`` names our parent.

    The variable is removed from the environment first, so that this process's own children
    (gateway workers, say) do not inherit a parent that is not theirs."""
    value = os.environ.pop(PARENT_ENV, "")
    if value.isdigit() and int(value) == os.getppid():
        stop_with_parent(int(value))
