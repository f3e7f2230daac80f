"""A real ``modelyard serve`` process for the limit tests, and raw HTTP calls to it with a timing."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import AnnouncedProcess

ROOT = Path(__file__).resolve().parents[2]
PICKY = f"{ROOT / 'tests' / 'models.py'}:Picky"  # FP32 [-1, 1] -> [-1, 1], batched
NORMAL = json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}).encode()


@dataclasses.dataclass(frozen=True)
class Served:
    port: int
    pid: int

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/PID/status")


@contextlib.contextmanager
def serving(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``modelyard serve`` with the Picky model and ``args`` on a free port."""
    argv = [
        sys.executable,
        "-m",
        "modelyard.cli.main",
        "serve",
        PICKY,
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    server = AnnouncedProcess([*argv, *args], tmp / "server-stderr.txt", cwd=ROOT, env=full_env)
    try:
        url = server.wait_until_serving(timeout=60)
        yield Served(int(url.rsplit(":", 1)[1]), server.proc.pid)
    finally:
        server.proc.kill()
        server.proc.wait(timeout=30)


def post(
    port: int, path: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, Any, float]:
    """POST ``body``; the status, the JSON answer and the seconds it took."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    try:
        connection.request(
            "POST", path, body=body, headers={"content-type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return response.status, json.loads(raw) if raw.startswith(b"{") else raw, time.perf_counter() - started


def infer(port: int, timeout: float = 10) -> float:
    """One normal inference request; the seconds it took (it must succeed)."""
    status, answer, took = post(port, "/v2/models/picky/infer", NORMAL, timeout=timeout)
    assert status == 200, answer
    return took
