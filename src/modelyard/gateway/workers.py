"""Run the gateway: several worker processes on one port, supervised.

A single Python process tops out at one core, and users of Python gateways report the front
process as their bottleneck; so the supervisor reserves the port and starts ``workers`` processes
that each listen on it with SO_REUSEPORT (the kernel spreads connections evenly over them). Each
worker polls the routing table itself, so all of them converge within ``refresh_interval_s`` of a
change. A worker that dies
is restarted with back-off; SIGTERM/SIGINT drain every worker (in-flight requests finish) and exit 0.
With an admin port, every worker listens on that one too, the same way; its URL is announced (as
``modelyard gateway-admin: serving on URL``) just before the gateway's own line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from modelyard._process import Backoff, announce, stop_with_parent, terminate, watch_parent_from_env
from modelyard.gateway.settings import GatewaySettings
from modelyard.web.listen import bind_socket

__all__ = ["run_gateway"]

log = logging.getLogger("modelyard.gateway")
SETTINGS_ENV = "MODELYARD_GATEWAY_SETTINGS"
READY_ENV = "MODELYARD_GATEWAY_READY_FD"
SUPERVISOR_ENV = "MODELYARD_GATEWAY_SUPERVISOR"


def _announce(url: str) -> None:
    announce(url, "gateway")


def _announce_admin(url: str) -> None:
    announce(url, "gateway-admin")


def _bind_admin(settings: GatewaySettings, *, reuse_port: bool, listen: bool) -> socket.socket | None:
    if settings.admin_port is None:
        return None
    return bind_socket(settings.admin_host, settings.admin_port, reuse_port=reuse_port, listen=listen)


def _url(settings: GatewaySettings, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{settings.scheme}://{host}:{port}"


class _Supervisor:
    def __init__(
        self, settings: GatewaySettings, on_ready: Callable[[str], None], admin_sock: socket.socket | None
    ) -> None:
        self.settings = settings
        self.on_ready = on_ready
        self.admin_sock = admin_sock  # bound like self.sock, not listening
        self.count = settings.resolved_workers()
        self.stopping = False
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="modelyard-gateway-metrics-"))
        # The supervisor holds the port (bound, not listening); every worker listens on it with
        # SO_REUSEPORT, so the kernel spreads connections evenly. One shared listening socket let
        # whichever worker woke first take most of a burst of connections: measured 60/40 to 85/15.
        self.sock = bind_socket(settings.host, settings.port, reuse_port=True, listen=False)
        port = self.sock.getsockname()[1]
        update: dict[str, object] = {"metrics_dir": self.metrics_dir, "port": port}
        if admin_sock is not None:
            update["admin_port"] = admin_sock.getsockname()[1]
        self.worker_settings = settings.model_copy(update=update).model_dump_json()
        self.ready_r, self.ready_w = os.pipe()
        self.workers: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update({
            SETTINGS_ENV: self.worker_settings,
            READY_ENV: str(self.ready_w),
            SUPERVISOR_ENV: str(os.getpid()),
        })  # fmt: skip
        return subprocess.Popen(
            [sys.executable, "-m", "modelyard.gateway.workers"],
            env=env,
            pass_fds=(self.ready_w,),
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            self.workers = [self.spawn() for _ in range(self.count)]
            if not self._await_ready(timeout_s=120.0):
                return 0 if self.stopping else 2  # asked to stop while starting is not a failure
            self.on_ready(_url(self.settings, self.sock))
            self._watch()
            return 0
        finally:
            self._shutdown()

    def _await_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        ready = 0
        os.set_blocking(self.ready_r, False)
        while ready < self.count and not self.stopping:
            with contextlib.suppress(BlockingIOError):
                ready += len(os.read(self.ready_r, 64))
            if any(worker.poll() is not None for worker in self.workers) or time.monotonic() > deadline:
                print("modelyard gateway: a worker failed to start", file=sys.stderr, flush=True)
                return False
            time.sleep(0.02)
        return not self.stopping

    def _watch(self) -> None:
        # A crash a minute after the last one is not a crash loop: the delay starts over.
        backoff = Backoff(0.5, 10.0, healthy_s=60.0)
        while not self.stopping:
            time.sleep(0.1)
            for index, worker in enumerate(self.workers):
                if worker.poll() is None or self.stopping:
                    continue
                print(f"modelyard gateway: worker {worker.pid} exited ({worker.returncode}); restarting",
                      file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(backoff.next())
                self.workers[index] = self.spawn()

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        terminate(self.workers, grace_s=30.0)
        self.sock.close()
        if self.admin_sock is not None:
            self.admin_sock.close()
        os.close(self.ready_r)
        os.close(self.ready_w)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def run_gateway(
    settings: GatewaySettings,
    on_ready: Callable[[str], None] = _announce,
    on_admin_ready: Callable[[str], None] = _announce_admin,
) -> int:
    """Serve the gateway until SIGTERM/SIGINT; returns the exit code (0 after a clean drain).

    With one worker everything runs in this process; with more, this process only supervises.
    ``on_admin_ready`` gets the admin listener's URL (when there is one) just before ``on_ready``
    gets the gateway's.
    """
    watch_parent_from_env()  # started by `modelyard up`: stop with it
    single = settings.resolved_workers() == 1
    admin_sock = _bind_admin(settings, reuse_port=not single, listen=single)

    def ready(url: str) -> None:
        if admin_sock is not None:
            on_admin_ready(_url(settings, admin_sock))
        on_ready(url)

    if single:
        _serve_one(settings, bind_socket(settings.host, settings.port), ready, admin_sock)
        return 0
    return _Supervisor(settings, ready, admin_sock).run()


def _serve_one(
    settings: GatewaySettings,
    sock: socket.socket,
    on_ready: Callable[[str], None],
    admin_sock: socket.socket | None,
) -> None:
    from modelyard.gateway.app import build_service
    from modelyard.gateway.http1 import serve_forever

    try:
        serve_forever(build_service(settings), sock, on_ready, admin_sock=admin_sock)
    finally:
        sock.close()
        if admin_sock is not None:
            admin_sock.close()


def _worker_main() -> None:
    """Entry point of one worker process (started by the supervisor, never by hand)."""
    settings = GatewaySettings.model_validate_json(os.environ[SETTINGS_ENV])
    sock = bind_socket(settings.host, settings.port, reuse_port=True)
    admin_sock = _bind_admin(settings, reuse_port=True, listen=True)
    ready_fd = int(os.environ[READY_ENV])

    def ready(url: str) -> None:
        os.write(ready_fd, b"r")  # the supervisor announces once every worker said so

    # Drain and exit once the supervisor is gone (SIGKILL, the OOM killer): it cannot stop us then.
    stop_with_parent(int(os.environ[SUPERVISOR_ENV]))
    _serve_one(settings, sock, ready, admin_sock)


if __name__ == "__main__":
    _worker_main()
