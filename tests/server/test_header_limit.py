"""The request line and headers are bounded (``max_header_bytes``, 64 KiB): 431, then the server
closes the connection, and other requests never wait on it.

Before, neither httptools nor uvicorn bounded a head: a 128 MiB header took the server 22 s to
take in (httptools joins a header's pieces, quadratic in its length) and held other requests 9 s.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.server.serving import NORMAL, Served, infer, serving

pytestmark = pytest.mark.slow

LIMIT = 64 * 1024  # the default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("header-limit")) as served:
        yield served


def head(extra: bytes = b"", body: bytes = NORMAL) -> bytes:
    return (
        b"POST /v2/models/picky/infer HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
    )


def read_answer(sock: socket.socket, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one answer."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before an answer: {data!r}")
        data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest[:length]


def closes(sock: socket.socket, timeout: float = 3) -> bool:
    """Whether the server closes the connection within ``timeout`` (keep-alive would take 5 s)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def assert_refused(sock: socket.socket) -> None:
    status, headers, body = read_answer(sock)
    assert status == 431, (status, body)
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert (error["kind"], error["field"]) == ("too_large", "headers")
    assert f"limit of {LIMIT} bytes (max_header_bytes)" in error["error"]
    assert closes(sock)


def test_a_head_just_over_the_limit_is_431_and_the_connection_closes(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(b"x-big: " + b"a" * LIMIT + b"\r\n") + NORMAL)
        assert_refused(sock)


def test_a_head_under_the_limit_is_served(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head(b"x-big: " + b"a" * (LIMIT - 1024) + b"\r\n") + NORMAL)
        status, _, body = read_answer(sock)
        assert status == 200, body
        # ... and the connection stays open for the next request
        sock.sendall(head() + NORMAL)
        assert read_answer(sock)[0] == 200


def test_an_endless_header_is_cut_off_early_and_holds_no_one(server: Served) -> None:
    """A header that never ends, streamed: refused once the limit passes, the connection closed
    soon after (the server reads and drops for a second first, so the answer is not lost to a
    reset), while other requests go on being answered."""
    cut_off = threading.Event()

    def stream(sock: socket.socket) -> None:
        piece = b"a" * 65536
        deadline = time.monotonic() + 20
        try:
            sock.sendall(head()[:-4] + b"\r\nx-endless: ")
            while time.monotonic() < deadline:
                sock.sendall(piece)
        except OSError:  # the server closed: what it should do
            cut_off.set()

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        started = time.monotonic()
        writer = threading.Thread(target=stream, args=(sock,), daemon=True)
        writer.start()
        worst = max(infer(server.port, timeout=5) for _ in range(5))
        assert_refused(sock)
        assert time.monotonic() - started < 5
        assert cut_off.wait(timeout=10), "the server never closed the connection"
        writer.join(timeout=10)
    assert worst < 1.0
    infer(server.port)
