"""Graceful shutdown of a real ``modelyard serve`` process: readiness first, then drain, exit 0."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import AnnouncedProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SLOW = f"{ROOT / 'tests' / 'models.py'}:Slow"  # sync predict that sleeps `seconds`; unbatched

ASYNC_SLEEPER = """
import asyncio

import numpy as np

import modelyard


@modelyard.model(name="sleeper")
class Sleeper:
    async def predict(self, inputs):
        await asyncio.sleep(float(inputs["seconds"].ravel()[0]))
        return np.array([1.0])
"""


class Server(AnnouncedProcess):
    """A ``modelyard serve`` subprocess; knows its URL once it printed the serving line."""

    def __init__(self, args: list[str], tmp: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "modelyard.cli.main", "serve", *args, "--port", "0"]
        super().__init__(argv, tmp / "stderr.txt", cwd=ROOT, env=env)
        self.wait_until_serving(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def _start(target: str, **config: Any) -> Server:
        config_path = tmp_path / "config.yaml"
        config_path.write_text(json.dumps({"log_level": "warning", **config}))  # JSON is YAML
        server = Server([target, "--config", str(config_path)], tmp_path)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.close()


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()


def sleep_request(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "seconds", "shape": [1], "datatype": "FP32", "data": [seconds]}]}


def fire(url: str, seconds: float, count: int) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = []

    def one() -> None:
        try:
            results.append(http("POST", url, sleep_request(seconds))[0])
        except Exception as exc:  # a dropped connection is a result too
            results.append(exc)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def wait_in_flight(url: str, count: int, timeout: float = 20) -> None:
    want = f'modelyard_requests_in_flight{{protocol="v2"}} {float(count)}'
    deadline = time.monotonic() + timeout
    while want not in http("GET", f"{url}/metrics")[1]:
        assert time.monotonic() < deadline, f"never saw {count} requests in flight"
        time.sleep(0.02)


def test_sigterm_turns_readiness_off_serves_the_grace_then_drains_and_exits_zero(start: Any) -> None:
    server = start(SLOW, drain_grace_s=1.5, drain_timeout_s=30)
    assert http("GET", f"{server.url}/health/ready")[0] == 200

    threads, results = fire(f"{server.url}/v2/models/slow/infer", seconds=2.5, count=4)
    wait_in_flight(server.url, 4)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    # During the grace period: not ready, still live, still answering.
    status, body = http("GET", f"{server.url}/health/ready")
    while status == 200 and time.monotonic() - signalled < 1.0:
        status, body = http("GET", f"{server.url}/health/ready")
    assert status == 503
    assert body["draining"] is True
    assert body["models"] == {"slow/1": "READY"}
    assert http("GET", f"{server.url}/health/live") == (200, {"live": True})
    assert time.monotonic() - signalled < 1.5, "the grace period was over before the checks ran"
    assert server.proc.poll() is None

    # Every in-flight request completes normally, then the process exits 0.
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200, 200, 200], server.stderr()
    assert server.proc.wait(timeout=30) == 0, server.stderr()
    elapsed = time.monotonic() - signalled
    assert 1.4 <= elapsed < 20, elapsed  # not before the grace period; well before any timeout


def test_second_sigterm_skips_the_rest_of_the_grace_period(start: Any) -> None:
    server = start(SLOW, drain_grace_s=30)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while http("GET", f"{server.url}/health/ready")[0] == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert server.proc.poll() is None  # still serving its 30 s grace
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0, server.stderr()
    assert time.monotonic() - signalled < 20


def test_drain_timeout_bounds_the_wait_for_in_flight_requests(start: Any, tmp_path: Path) -> None:
    model = tmp_path / "sleeper.py"
    model.write_text(ASYNC_SLEEPER)
    # 0.5 s is rounded up to uvicorn's whole second; it must not mean "wait for ever".
    server = start(f"{model}:Sleeper", drain_grace_s=0, drain_timeout_s=0.5, request_timeout_s=4)
    threads, results = fire(f"{server.url}/v2/models/sleeper/infer", seconds=30, count=1)
    wait_in_flight(server.url, 1)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    threads[0].join(timeout=30)
    answered = time.monotonic() - signalled
    # Cut off by the drain timeout (uvicorn answers 500), not left to run into its 4 s deadline (504).
    assert results == [500], server.stderr()
    assert answered < 3.0
    assert server.proc.wait(timeout=30) == 0, server.stderr()
