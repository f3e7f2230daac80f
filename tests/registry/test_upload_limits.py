"""Slow and stalled uploads against a real control plane (uvicorn on 127.0.0.1, raw sockets): they are
bounded in number (503 beyond), dropped when idle, and never hold the threads other APIs need."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from tests.registry.conftest import artifact_files
from tests.support import serve_in_thread

API = "/api/v1"


@contextlib.contextmanager
def control_plane(tmp_path: Path, **limits: Any) -> Iterator[tuple[str, Path]]:
    """A control plane on a free loopback port: ``(host:port, artifact folder)``."""
    settings = ControlSettings(home=tmp_path / "home", **limits)
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        yield address, Path(settings.resolved_artifact_url())


def stalled_upload(address: str, declared: int = 1000, sent: int = 1) -> socket.socket:
    """A POST /artifacts that declares ``declared`` bytes, sends ``sent`` and then nothing."""
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST {API}/artifacts HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"z" * sent)
    return sock


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of the one response on ``sock`` (Content-Length framed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-response"
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def temporary_uploads(root: Path) -> int:
    return sum(1 for path in artifact_files(root) if path.parent.name == "tmp")


def wait_for_uploads(root: Path, count: int, timeout: float = 10.0) -> int:
    """Wait until ``count`` uploads are streaming into the store (or ``timeout``); how many are."""
    deadline = time.monotonic() + timeout
    while (found := temporary_uploads(root)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_uploads_beyond_the_limit_get_503_and_a_stalled_one_is_dropped(tmp_path: Path) -> None:
    with control_plane(tmp_path, max_concurrent_uploads=2, upload_idle_timeout_s=1.5) as (address, root):
        stalled = [stalled_upload(address) for _ in range(2)]
        try:
            assert wait_for_uploads(root, 2) == 2
            # The third gets its answer at once, without the server waiting for a body it never sent.
            started = time.monotonic()
            extra = stalled_upload(address, sent=0)
            status, headers, body = read_response(extra, timeout=5)
            assert time.monotonic() - started < 1.0
            assert (status, body["kind"]) == (503, "overloaded"), body
            assert int(headers["retry-after"]) >= 1
            assert closed_by_server(extra, timeout=5)
            extra.close()
            with httpx.Client(base_url=f"http://{address}", timeout=5) as client:
                started = time.monotonic()
                assert client.get(f"{API}/models").status_code == 200
                assert time.monotonic() - started < 1.0
                # Idle for the timeout: each stalled upload is answered 400 naming the body and its
                # connection closed; its temporary object is gone.
                for sock in stalled:
                    status, _, body = read_response(sock, timeout=10)
                    assert (status, body["kind"], body["field"]) == (400, "invalid_input", "body"), body
                    # One byte in 1.5 s is also under the minimum rate: either reason may win.
                    assert body["error"].startswith(("upload stalled", "upload too slow")), body
                    assert closed_by_server(sock, timeout=5)
                assert temporary_uploads(root) == 0
                # The slots are free again.
                response = client.post(
                    f"{API}/artifacts",
                    content=b"weights",
                    headers={"content-type": "application/octet-stream"},
                )
                assert response.status_code == 201, response.text
        finally:
            for sock in stalled:
                sock.close()


def test_stalled_uploads_never_starve_the_threads_other_apis_use(tmp_path: Path) -> None:
    # More stalled uploads than the 40 threads of the default worker pool every other API's
    # database calls run on: they must wait on threads of their own.
    count = 45
    with control_plane(tmp_path, max_concurrent_uploads=count, upload_idle_timeout_s=30) as (address, root):
        stalled = [stalled_upload(address) for _ in range(count)]
        try:
            under_way = wait_for_uploads(root, count, timeout=10)
            with httpx.Client(base_url=f"http://{address}", timeout=3) as client:
                started = time.monotonic()
                models = client.get(f"{API}/models")
                routes = client.get(f"{API}/routes")
                elapsed = time.monotonic() - started
            assert models.status_code == 200, models.text
            assert routes.status_code == 200, routes.text
            assert elapsed < 1.5
            assert under_way == count
        finally:
            for sock in stalled:
                sock.close()
        # Clients gone: every temporary object is removed.
        deadline = time.monotonic() + 10
        while temporary_uploads(root):
            assert time.monotonic() < deadline, "stalled uploads left temporary objects behind"
            time.sleep(0.05)


def test_an_upload_that_trickles_is_dropped_once_its_average_rate_is_too_low(tmp_path: Path) -> None:
    # A byte every 0.2 s never lets the 1 s idle timeout expire, so without a floor on the average
    # rate it would hold its slot for as long as the client likes.
    with control_plane(tmp_path, max_concurrent_uploads=1, upload_idle_timeout_s=1.0) as (address, root):
        sock = stalled_upload(address, declared=10_000, sent=1)
        try:
            assert wait_for_uploads(root, 1) == 1
            started = time.monotonic()
            sock.settimeout(0.2)
            answer = b""
            while not answer and time.monotonic() - started < 6:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b"z")
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(65536, socket.MSG_PEEK)
            assert answer, "the trickling upload was still held after 6 s"
            status, _, body = read_response(sock, timeout=5)
            assert (status, body["kind"], body["field"]) == (400, "invalid_input", "body"), body
            assert "too slow" in body["error"]
            assert time.monotonic() - started < 3
            assert closed_by_server(sock, timeout=5)
            deadline = time.monotonic() + 5
            while temporary_uploads(root) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert temporary_uploads(root) == 0
        finally:
            sock.close()
