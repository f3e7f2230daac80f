"""Plain inference requests answered on uvicorn's protocol without ASGI (``oip_http1``).

A real server runs the protocol ``modelyard serve`` runs; requests go over raw sockets, so what
is on the wire (status line, headers, framing, order) is what is checked. Answers must be what
the ASGI path gives for the same request, and whatever the fast path leaves to uvicorn (pipelined
requests, HTTP/1.0, gzip bodies, ``Expect: 100-continue``) must still be answered there.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import httpx
import orjson
import pytest
import uvicorn
from starlette.testclient import TestClient
from uvicorn.server import ServerState

import modelyard
from modelyard import TensorSpec
from modelyard.server import Settings
from modelyard.server.app import ModelServerApp, build_app
from modelyard.server.protocols.oip_http1 import infer_protocol
from modelyard.server.serve import server_protocol
from tests import models
from tests.support import serve_in_thread

BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
PATH = "/v2/models/doubler/infer"


@modelyard.model(
    name="held", inputs=[TensorSpec("x", "FP32", [-1, 1])], outputs=[TensorSpec("y", "FP32", [-1, 1])]
)
class Held:
    """Holds each batch until ``gate`` opens."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    @modelyard.batch(max_batch_size=1, max_latency_ms=0, stack=True)
    def predict(self, inputs: dict[str, object]) -> dict[str, object]:
        self.gate.wait(10)
        return {"y": inputs["x"]}


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    opened = threading.Event()
    yield opened
    opened.set()


@pytest.fixture
def app(gate: threading.Event) -> ModelServerApp:
    return build_app(Settings(), [models.Doubler, Held.replace(init_kwargs={"gate": gate})])


@pytest.fixture
def address(app: ModelServerApp) -> Iterator[tuple[str, int]]:
    with serve_in_thread(app, http=server_protocol(Settings(), app)) as served:
        host, port = served.rsplit(":", 1)
        yield host, int(port)


def request(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "host: test", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` answers (Content-Length framed) off ``sock``: (status, headers, body)."""
    data, answers = b"", []
    sock.settimeout(10)
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode().split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        if status_line.split()[1].startswith("1"):
            continue  # an interim answer (100 Continue): no body
        length = int(headers["content-length"])
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            data += chunk
        answers.append((int(status_line.split()[1]), headers, data[:length]))
        data = data[length:]
    return answers


def exchange(address: tuple[str, int], raw: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    with socket.create_connection(address) as sock:
        sock.sendall(raw)
        return read_answers(sock, count)


def test_answers_are_what_the_asgi_path_gives(address: tuple[str, int]) -> None:
    binary = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                           "parameters": {"binary_data_output": True}})  # fmt: skip
    cases = [
        (PATH, BODY),
        (PATH, binary),
        ("/v2/models/doubler/versions/1/infer", BODY),
        ("/v2/models/nobody/infer", BODY),  # 404 naming the model
        (PATH, b"{not json"),  # 400 naming the body
        (
            PATH,
            orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}),
        ),
    ]
    with TestClient(build_app(Settings(), [models.Doubler])) as asgi:  # the same server, over ASGI
        for path, body in cases:
            ((status, headers, payload),) = exchange(address, request(path, body))
            expected = asgi.post(path, content=body)
            assert status == expected.status_code, path
            assert payload == expected.content, path
            assert headers["content-type"] == expected.headers["content-type"]
            assert headers.get("inference-header-content-length") == expected.headers.get(
                "inference-header-content-length"
            )
            assert "date" in headers  # uvicorn's default headers, as on its own answers


def test_keep_alive_and_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    bodies = [
        orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [i, i, i]}]})
        for i in range(6)
    ]
    # All six in one write: the first is answered here, those that arrive while it is in flight
    # are queued by uvicorn; the answers come back in the order asked, on one connection.
    answers = exchange(address, b"".join(request(PATH, body) for body in bodies), count=6)
    doubled = [orjson.loads(body)["outputs"][0]["data"][0] for _, _, body in answers]
    assert [status for status, _, _ in answers] == [200] * 6
    assert doubled == [2.0 * i for i in range(6)]


@pytest.mark.parametrize(
    ("extra", "version", "body"),
    [
        ((), "1.0", BODY),  # HTTP/1.0: uvicorn's path (and the connection closes after it)
        (("content-encoding: gzip",), "1.1", gzip.compress(BODY)),
        (("expect: 100-continue",), "1.1", BODY),
    ],
    ids=["http-1.0", "gzip", "expect-100"],
)
def test_requests_left_to_uvicorn_are_answered_there(
    address: tuple[str, int], extra: tuple[str, ...], version: str, body: bytes
) -> None:
    answers = exchange(address, request(PATH, body, *extra, version=version))
    status, _, payload = answers[-1]
    assert status == 200
    assert orjson.loads(payload)["outputs"][0]["data"] == [2.0, 4.0, 6.0]


def test_a_body_over_the_limit_is_refused_with_413(address: tuple[str, int]) -> None:
    limit = Settings().max_body_bytes
    with socket.create_connection(address) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nhost: t\r\ncontent-length: {limit + 1}\r\n\r\n".encode())
        ((status, _, payload),) = read_answers(sock, 1)
    assert status == 413
    assert orjson.loads(payload)["field"] == "body"


def test_a_client_that_goes_away_frees_its_place(address: tuple[str, int], gate: threading.Event) -> None:
    held = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]})
    url = f"http://{address[0]}:{address[1]}"

    def in_flight() -> float:
        text = httpx.get(url + "/metrics").text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith('modelyard_model_requests_in_flight{model="held"}')
        )
        return float(line.split()[-1])

    sockets = [socket.create_connection(address) for _ in range(3)]
    for sock in sockets:
        sock.sendall(request("/v2/models/held/infer", held))
    deadline = time.monotonic() + 10
    while in_flight() != 3:  # one in the model, two queued
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for sock in sockets[1:]:
        sock.close()  # the two queued callers leave
    while in_flight() != 1:
        assert time.monotonic() < deadline, "the callers that left still hold their places"
        time.sleep(0.02)
    gate.set()
    ((status, _, _),) = read_answers(sockets[0], 1)
    sockets[0].close()
    assert status == 200


# -- a client that reads slowly, on a transport whose writes the test controls --------------------


class SlowReader(asyncio.Transport):
    """Records writes; the first one makes the protocol pause writing, as a full socket buffer does."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False
        self.protocol: asyncio.Protocol | None = None
        self.pause_after_write = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))
        if self.pause_after_write and self.protocol is not None:
            self.pause_after_write = False
            self.protocol.pause_writing()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


@pytest.mark.anyio
async def test_a_paused_write_keeps_pipelined_answers_in_order_and_the_connection_open() -> None:
    """An answer whose write fills the socket buffer, then two pipelined requests, the first slow:
    the answers go in the order asked, and the keep-alive timer never cuts the slow one off."""

    class Limits:
        max_body_bytes = 1 << 20

    class Endpoint:
        limits = Limits()

        async def answer(self, *args: Any) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
            return 200, b'{"a": 1}', b"application/json", []

    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:  # uvicorn's path, for the other two
        if scope["path"] == "/slow":
            await gate.wait()
        body = scope["path"].encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, timeout_keep_alive=0.2, log_level="warning")
    config.load()
    protocol = infer_protocol(cast(Any, Endpoint()))(config, ServerState(), {})
    transport = SlowReader()
    transport.protocol = protocol
    protocol.connection_made(transport)
    protocol.data_received(request(PATH, b"{}"))  # answered here; its write pauses the transport
    await asyncio.sleep(0.02)
    protocol.data_received(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\nGET /fast HTTP/1.1\r\nhost: t\r\n\r\n")
    await asyncio.sleep(0.02)
    protocol.resume_writing()
    await asyncio.sleep(0.4)  # past the keep-alive timeout: /slow is still being answered
    assert not transport.closed
    gate.set()
    await asyncio.sleep(0.05)
    bodies = [chunk for chunk in transport.out if not chunk.startswith(b"HTTP/1.1")]
    assert transport.out[0].endswith(b'{"a": 1}')
    assert bodies == [b"/slow", b"/fast"]
