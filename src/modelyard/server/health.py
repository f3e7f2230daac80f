"""Readiness from the models' own ``health()`` hooks, polled in the background.

Probes never call a hook: they read the verdict of the last poll, so a probe costs nothing and a
slow hook cannot make the probe itself time out. One poll calls every READY model's hook at once,
each call bounded by ``health_timeout_s``; polls repeat ``health_interval_s`` after the previous one
ended. A sync hook runs in a daemon thread of its own, not in the model's worker pool: a hook that
hangs then holds no predict worker and cannot keep the process from exiting. While a call from an
earlier poll is still running, the next poll waits on that call again instead of starting another,
so a hung hook costs one thread, not one per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["HealthPoller", "HealthVerdict"]

log = logging.getLogger("modelyard.server")


class HealthVerdict:
    """The last verdict of one model's ``health`` hook, and the one call of it that may still run.

    A hook that returns a falsy value other than None, raises, or does not answer within the
    timeout makes the verdict unhealthy. Transitions are logged once each, not once per poll.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.ok = True
        self.reason = ""
        self._call: asyncio.Future[Any] | None = None

    async def check(self, hook: Callable[[], Any], timeout_s: float) -> bool:
        """Call ``hook`` (or keep waiting on its running call) for up to ``timeout_s``; record the verdict."""
        call = self._call
        if call is None or call.done():
            call = self._call = _start(hook, f"model {self.label} health")
        done, _ = await asyncio.wait({call}, timeout=timeout_s)
        if not done:
            if isinstance(call, asyncio.Task):  # a coroutine can be stopped; a thread cannot
                call.cancel()
            return self._record(False, f"health() did not answer within {timeout_s:g} s")
        if self._call is call:
            self._call = None
        return self._record(*_verdict(call))

    def discard(self) -> None:
        """Forget the running call (the model is unloading); a coroutine is cancelled."""
        call, self._call = self._call, None
        if isinstance(call, asyncio.Task):
            call.cancel()

    def _record(self, ok: bool, reason: str) -> bool:
        if ok and not self.ok:
            log.info("model %s is healthy again", self.label)
        elif not ok and self.ok:
            log.warning("model %s is unhealthy, readiness reports 503: %s", self.label, reason)
        self.ok, self.reason = ok, reason
        return ok


class _Checked(Protocol):
    async def check_health(self, timeout_s: float) -> bool: ...


class HealthPoller:
    """Polls every model's health in a background task that the data plane starts and stops."""

    def __init__(self, models: Iterable[_Checked], interval_s: float, timeout_s: float) -> None:
        self.models = models
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    async def poll(self, models: Iterable[_Checked] | None = None) -> None:
        """One round: every model's hook at once (or only ``models``'), each bounded by the timeout."""
        chosen = self.models if models is None else models
        await asyncio.gather(*(model.check_health(self.timeout_s) for model in chosen))

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="modelyard-health-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception:  # a bug here must not end polling: readiness would freeze
                log.exception("polling the models' health failed")


def _start(hook: Callable[[], Any], thread_name: str) -> asyncio.Future[Any]:
    if inspect.iscoroutinefunction(hook):
        call: asyncio.Future[Any] = asyncio.ensure_future(hook())
    else:
        call = _in_daemon_thread(hook, thread_name)
    call.add_done_callback(_consume)
    return call


def _in_daemon_thread(fn: Callable[[], Any], name: str) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: Exception | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = fn(), None
        except Exception as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the hook ran: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _verdict(call: asyncio.Future[Any]) -> tuple[bool, str]:
    if call.cancelled():
        return False, "health() was cancelled"
    error = call.exception()
    if error is not None:
        return False, f"health() raised {type(error).__name__}: {error}"
    result = call.result()
    try:
        ok = result is None or bool(result)
    except Exception as exc:  # e.g. an array of several booleans
        return False, f"health() returned {type(result).__name__}, not a bool: {exc}"
    return ok, "" if ok else f"health() returned {result!r}"


def _consume(call: asyncio.Future[Any]) -> None:
    # A call that fails after its poll gave up on it is read by nobody: retrieve its exception so
    # asyncio does not log "exception was never retrieved" for an outcome already counted.
    if not call.cancelled():
        call.exception()
