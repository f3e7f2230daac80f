"""Junk on the wire never crashes or hangs the gateway: every connection gets an HTTP answer or a
close, and the gateway keeps serving real requests afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.support import GatewayThread, GatewayWorld

PATHS = [
    "/projects/mail/models/spam:predict", "/projects/mail/models/spam/infer",
    "/projects/mail/models/spam/versions/v1/infer", "/projects/mail/models/spam", "/metrics",
    "/-/routing", "/projects//models/:predict", "/projects/mail/models/spam/versions//infer", "/%00",
    "/projects/%2e%2e/models/x",
]  # fmt: skip
# One worker runs the whole module, so "after the junk" really comes after it.
pytestmark = pytest.mark.xdist_group("gateway-fuzz")
METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "BREW", ""]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    world = GatewayWorld(tmp_path_factory.mktemp("fuzz"))
    try:
        replica = world.replica("v1")
        world.store.set_weights("mail", "spam", {"v1": 1})
        world.store.set_replicas("mail", "spam", "v1", [replica.url])
        yield world.gateway(max_body_bytes=4096)
    finally:
        world.close()


def heads() -> st.SearchStrategy[bytes]:
    header = st.tuples(
        st.sampled_from(["content-length", "transfer-encoding", "expect", "x-request-id", "connection", "x"]),
        st.one_of(st.sampled_from(["0", "5", "-1", "99999999", "chunked", "100-continue", "close", ""]),
                  st.text(max_size=20)),
    )  # fmt: skip
    return st.builds(
        lambda method, path, version, headers, body: (
            f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        ).encode("utf-8", "replace") + body,
        st.sampled_from(METHODS), st.sampled_from(PATHS),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9", ""]), st.lists(header, max_size=5),
        st.binary(max_size=64),
    )  # fmt: skip


def exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # nothing more is coming: the gateway must answer or close
        received = b""
        while chunk := sock.recv(65536):  # a hang here is a failure (socket timeout)
            received += chunk
    return received


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(heads(), st.binary(max_size=300)))
def test_junk_gets_an_http_answer_or_a_close(gateway: GatewayThread, data: bytes) -> None:
    received = exchange(gateway.url, data)
    if received:
        assert received.startswith(b"HTTP/1.1 "), received[:100]
        status = int(received[9:12])
        assert status < 500 or status in (502, 503, 504), received[:300]


def test_the_gateway_still_serves_after_the_junk(gateway: GatewayThread) -> None:
    for _ in range(3):
        answer = httpx.post(
            gateway.url + "/projects/mail/models/spam:predict", content=b'{"instances": [[1]]}'
        )
        assert answer.status_code == 200
        assert answer.json()["replica"] == "v1"
