"""Listening sockets and a uvicorn server that says where it listens: shared by every server we run."""

from __future__ import annotations

import contextlib
import gc
import socket
from collections.abc import Callable, Iterator

import uvicorn

__all__ = ["AnnouncingServer", "bind_socket", "settle_gc"]


def settle_gc() -> None:
    """Keep the cyclic garbage collector off the request path's back; call once a server is up.

    Everything alive by then (imported modules, loaded models, SQLAlchemy's and pydantic's caches:
    hundreds of thousands of objects) is moved out of the collector's sight, so a full collection
    scans only what was made since; and young collections run less often. A request's own objects
    form no cycles, so they are freed by reference counting either way.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening socket; port 0 picks a free port (read it back with ``getsockname``).

    ``reuse_port``: several processes bind the same port and the kernel spreads new connections
    evenly over their sockets (Linux SO_REUSEPORT); with ``listen=False`` the socket only holds the
    port for the group and takes no connections itself.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready(url)`` once its socket accepts, and exits 0 on SIGTERM."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets and not self.should_exit:
            host, port = sockets[0].getsockname()[:2]
            scheme = "https" if self.config.is_ssl else "http"
            self._on_ready(f"{scheme}://{host}:{port}")

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the stop signal on the way out, so the process would die "killed
            # by SIGTERM". We stopped gracefully: exit normally (code 0) instead.
            self._captured_signals.clear()
