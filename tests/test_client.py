"""modelyard.Client and AsyncClient against real servers (uvicorn on port 0, in threads).

- ``model_server``: the real model server (``build_app``) with tiny models; the bare-model path.
- ``gateway``: a small raw-ASGI stand-in for the gateway, in front of another real model app. It
  serves the gateway's URL scheme (``/projects/{p}/models/{m}[/versions/{v}]/infer`` and the model
  resource) by rewriting the path to the model server's, records every request it sees (path,
  ``x-request-id``, the client's TCP port), and can be told to answer the next requests with a
  scripted error or to stall, which is how retries, timeouts and error mapping are tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import modelyard
import modelyard.client
from modelyard import TensorSpec
from modelyard.client import (
    AsyncClient,
    BadGatewayError,
    Client,
    ClientError,
    ConnectionFailed,
    InvalidArgument,
    InvalidRequest,
    ModelFailedError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    Timeout,
    Unavailable,
)
from modelyard.errors import (
    BadGateway,
    DeadlineExceeded,
    ErrorKind,
    InvalidInput,
    ModelError,
    ModelNotFound,
    NotFound,
)
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import serve_in_thread

X = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
FAST = 0.001  # back-off for tests: retries without waiting
# Most gateway tests use "twin": it is unbatched, so it answers at once (doubler waits for batch-mates).


@modelyard.model(name="twin", version="1", inputs=[TensorSpec("x", "FP32", [-1, 3])])
class TwinOne:
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 1}


@modelyard.model(name="twin", version="2", inputs=[TensorSpec("x", "FP32", [-1, 3])])
class TwinTwo:
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 2}


def model_app() -> ASGIApp:
    return build_app(Settings(), [models.Doubler, models.AsyncEcho, models.Picky, TwinOne, TwinTwo])


# -- the gateway stand-in ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str
    path: str
    request_id: str
    port: int


_GATEWAY_PATH = re.compile(
    r"/projects/(?P<project>[^/]+)/models/(?P<rest>[^/]+(?:/versions/[^/]+)?(?:/infer)?)"
)


class FakeGateway:
    """The gateway's URL scheme over a real model app, with scripted failures (see the docstring)."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.seen: list[Seen] = []
        self.script: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = []
        self.stall_s = 0.0

    def reset(self) -> None:
        self.seen, self.script, self.stall_s = [], [], 0.0

    def fail(
        self, status: int, times: int = 1, kind: str | None = None, field: str | None = None, **headers: str
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and an error body (when ``kind``)."""
        body = b"<html>bad gateway</html>"
        if kind is not None:
            doc = {"error": f"scripted {status}", "kind": kind, **({"field": field} if field else {})}
            body = orjson.dumps(doc)
        pairs = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
        self.script += [(status, body, pairs)] * times

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the inner app loads its models
            await self.inner(scope, receive, send)
            return
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()
        self.seen.append(Seen(scope["method"], scope["path"], request_id, scope["client"][1]))
        echo = [(b"x-request-id", request_id.encode())]
        if self.stall_s:
            await stall(receive, self.stall_s)
        if self.script:
            status, body, headers = self.script.pop(0)
            await respond(send, status, body, echo + headers)
            return
        match = _GATEWAY_PATH.fullmatch(scope["path"])
        if match is None or match["project"] != "mail":
            await respond(send, 404, b'{"error": "no such project", "kind": "not_found"}', echo)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *echo]}
            await send(message)

        path = f"/v2/models/{match['rest']}"
        await self.inner({**scope, "path": path, "raw_path": path.encode()}, receive, send_with_id)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stall(receive: Receive, seconds: float) -> None:
    """Hold the request until the client hangs up (or ``seconds`` pass): a server that is too slow."""

    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until_disconnect(), seconds)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_server() -> Iterator[str]:
    with serve_in_thread(model_app()) as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[tuple[str, FakeGateway]]:
    fake = FakeGateway(model_app())
    with serve_in_thread(fake) as address:
        yield f"http://{address}", fake


@pytest.fixture
def gateway(gateway_server: tuple[str, FakeGateway]) -> FakeGateway:
    gateway_server[1].reset()
    return gateway_server[1]


@pytest.fixture
def client(model_server: str) -> Iterator[Client]:
    with Client(model_server, backoff_s=FAST, trust_env=False) as opened:
        yield opened


@pytest.fixture
def via_gateway(gateway_server: tuple[str, FakeGateway], gateway: FakeGateway) -> Iterator[Client]:
    with Client(gateway_server[0], backoff_s=FAST, trust_env=False) as opened:
        yield opened


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A port that refuses connections: bound (so no one else gets it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- round trips ---------------------------------------------------------------------------------


def test_round_trip_keeps_shapes_and_datatypes(client: Client) -> None:
    inputs = {
        "f": X,
        "i": np.array([[-(2**40)], [7]], dtype=np.int64),
        "s": np.array([["héllo", ""], ["a", "b c"]]),
        "b": np.array([b"\x00raw", b"bytes"], dtype=object),
        "h": np.array([0.1, -2.5], dtype=np.float16),
        "t": np.array([True, False]),
        "u": np.array(3, dtype=np.uint8),  # a scalar: shape []
    }
    out = client.predict("async_echo", inputs)
    assert list(out) == list(inputs)
    for name in ("f", "i", "h", "t", "u"):
        assert (out[name].dtype, out[name].shape) == (inputs[name].dtype, inputs[name].shape), name
        np.testing.assert_array_equal(out[name], inputs[name], strict=True)
    # BYTES come back as bytes, whatever went out.
    assert out["s"].dtype == object
    assert out["s"].tolist() == [["héllo".encode(), b""], [b"a", b"b c"]]
    assert out["b"].tolist() == [b"\x00raw", b"bytes"]


def test_nested_lists_and_scalars_are_converted_with_numpy(client: Client) -> None:
    out = client.predict("async_echo", {"n": [[1, 2], [3, 4]], "f": 0.5, "w": ["x", "y"]})
    assert out["n"].dtype == np.int64
    assert out["n"].tolist() == [[1, 2], [3, 4]]
    assert (out["f"].dtype, out["f"].shape, float(out["f"])) == (np.dtype(np.float64), (), 0.5)
    assert out["w"].tolist() == [b"x", b"y"]


def test_bare_model_goes_to_the_model_server(client: Client) -> None:
    out = client.predict("doubler", {"x": X})
    np.testing.assert_array_equal(out["y"], X * 2)
    assert out["y"].dtype == np.float32


def test_project_model_goes_through_the_gateway_url(via_gateway: Client, gateway: FakeGateway) -> None:
    out = via_gateway.predict("mail/doubler", {"x": X}, outputs=["y"])
    np.testing.assert_array_equal(out["y"], X * 2)
    assert [(s.method, s.path) for s in gateway.seen] == [("POST", "/projects/mail/models/doubler/infer")]


def test_version_pin_goes_to_the_versions_url(via_gateway: Client, gateway: FakeGateway) -> None:
    np.testing.assert_array_equal(via_gateway.predict("mail/twin", {"x": X})["y"], X + 2)  # latest
    np.testing.assert_array_equal(via_gateway.predict("mail/twin", {"x": X}, version=1)["y"], X + 1)
    assert [s.path for s in gateway.seen] == [
        "/projects/mail/models/twin/infer",
        "/projects/mail/models/twin/versions/1/infer",
    ]


def test_version_pin_on_the_model_server(client: Client) -> None:
    np.testing.assert_array_equal(client.predict("twin", {"x": X}, version="1")["y"], X + 1)
    np.testing.assert_array_equal(client.predict("twin", {"x": X}, version=2)["y"], X + 2)
    with pytest.raises(NotFoundError) as caught:
        client.predict("twin", {"x": X}, version=9)
    assert isinstance(caught.value, ModelNotFound)
    assert isinstance(caught.value, NotFound)
    assert (caught.value.status, caught.value.kind, caught.value.field) == (404, ErrorKind.NOT_FOUND, "model")
    assert (caught.value.target, caught.value.version, caught.value.name) == ("twin", "9", "twin")


# -- retries -------------------------------------------------------------------------------------


def test_retry_then_success_reuses_the_request_id(via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(503, times=2, kind="overloaded", retry_after="0")
    out = via_gateway.predict("mail/twin", {"x": X}, request_id="req-42")
    np.testing.assert_array_equal(out["y"], X + 2)
    assert [s.request_id for s in gateway.seen] == ["req-42"] * 3


def test_a_generated_request_id_is_the_same_on_every_attempt(
    via_gateway: Client, gateway: FakeGateway
) -> None:
    gateway.fail(502)
    via_gateway.predict("mail/twin", {"x": X})
    first, second = (s.request_id for s in gateway.seen)
    assert first == second
    assert re.fullmatch(r"[0-9a-f]{32}", first)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(status: int, via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(status)
    via_gateway.predict("mail/twin", {"x": X})
    assert len(gateway.seen) == 2


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (400, "invalid_input", InvalidRequest),
        (404, "not_found", NotFoundError),
        (413, "too_large", PayloadTooLargeError),
        (500, "internal", ServerError),
        (409, "conflict", ClientError),
    ],
)
def test_other_errors_are_not_retried(
    status: int, kind: str, error: type[ClientError], via_gateway: Client, gateway: FakeGateway
) -> None:
    gateway.fail(status, times=5, kind=kind)
    with pytest.raises(error) as caught:
        via_gateway.predict("mail/twin", {"x": X})
    assert len(gateway.seen) == 1
    assert (caught.value.status, caught.value.kind.value, caught.value.attempts) == (status, kind, 1)


def test_retries_exhausted_raise_unavailable(
    gateway_server: tuple[str, FakeGateway], gateway: FakeGateway
) -> None:
    gateway.fail(503, times=10, kind="overloaded", retry_after="0")
    with (
        Client(gateway_server[0], retries=2, backoff_s=FAST, trust_env=False) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.predict("mail/twin", {"x": X}, request_id="r1")
    assert len(gateway.seen) == 3
    error = caught.value
    assert isinstance(error, OverloadedError)
    assert isinstance(error, modelyard.errors.Overloaded)
    assert (error.status, error.kind, error.attempts, error.request_id) == (
        503,
        ErrorKind.OVERLOADED,
        3,
        "r1",
    )
    assert error.retry_after == 0.0
    assert "after 3 attempts" in str(error)


def test_504_every_time_is_a_timeout(via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(504, times=10, kind="deadline_exceeded")
    with pytest.raises(Timeout) as caught:
        via_gateway.predict("mail/twin", {"x": X})
    assert isinstance(caught.value, DeadlineExceeded)
    assert (caught.value.status, caught.value.attempts, len(gateway.seen)) == (504, 4, 4)


def test_retry_after_is_honoured(gateway_server: tuple[str, FakeGateway], gateway: FakeGateway) -> None:
    gateway.fail(503, kind="overloaded", retry_after="0.3")
    with Client(gateway_server[0], backoff_s=FAST, trust_env=False) as client:
        started = time.monotonic()
        client.predict("mail/twin", {"x": X})
    assert time.monotonic() - started >= 0.3
    assert len(gateway.seen) == 2


def test_retry_after_is_capped(gateway_server: tuple[str, FakeGateway], gateway: FakeGateway) -> None:
    gateway.fail(503, kind="overloaded", retry_after="30")
    with Client(gateway_server[0], backoff_s=FAST, max_backoff_s=0.05, trust_env=False) as client:
        started = time.monotonic()
        client.predict("mail/twin", {"x": X})
    assert time.monotonic() - started < 5
    assert len(gateway.seen) == 2


def test_connection_refused_is_retried_then_connection_failed(closed_url: str) -> None:
    with (
        Client(closed_url, retries=2, backoff_s=FAST, trust_env=False) as client,
        pytest.raises(ConnectionFailed) as caught,
    ):
        client.predict("doubler", {"x": X})
    error = caught.value
    assert (error.status, error.attempts) == (None, 3)
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert closed_url in str(error)


def test_no_answer_within_the_timeout_is_a_timeout_and_not_retried(
    gateway_server: tuple[str, FakeGateway], gateway: FakeGateway
) -> None:
    gateway.stall_s = 2.0
    with Client(gateway_server[0], timeout=0.2, backoff_s=FAST, trust_env=False) as client:
        started = time.monotonic()
        with pytest.raises(Timeout) as caught:
            client.predict("mail/twin", {"x": X})
    assert time.monotonic() - started < 1.5
    assert (caught.value.status, caught.value.attempts, len(gateway.seen)) == (None, 1, 1)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_one_connection_serves_many_requests(via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(503, kind="overloaded")  # a retry reuses the connection too
    for _ in range(5):
        via_gateway.predict("mail/twin", {"x": X})
    assert len(gateway.seen) == 6
    assert len({s.port for s in gateway.seen}) == 1


# -- typed errors --------------------------------------------------------------------------------


def test_a_400_from_the_model_server_is_an_invalid_input(client: Client) -> None:
    # Caught as the domain error, as in-process code catches the same mistake.
    with pytest.raises(InvalidInput) as caught:
        client.predict("doubler", {"x": np.zeros((2, 2), np.float32)}, request_id="bad-shape")
    error = caught.value
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.kind, error.field) == (400, ErrorKind.INVALID_INPUT, "x.shape")
    assert "expects [-1, 3]" in error.message
    assert error.request_id == "bad-shape"
    assert "bad-shape" in str(error)


def test_error_attributes_come_from_the_body_and_headers(via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(400, kind="invalid_input", field="inputs[0].datatype")
    with pytest.raises(InvalidRequest) as caught:
        via_gateway.predict("mail/twin", {"x": X}, request_id="abc")
    error = caught.value
    assert (error.message, error.field, error.request_id) == ("scripted 400", "inputs[0].datatype", "abc")
    assert (error.target, error.version) == ("mail/twin", None)


def test_a_model_that_raises_is_a_model_failed_error(via_gateway: Client, gateway: FakeGateway) -> None:
    with pytest.raises(ModelFailedError) as caught:
        via_gateway.predict("mail/picky", {"x": np.array([[-1.0]], np.float32)})
    assert isinstance(caught.value, ModelError)
    assert (caught.value.status, caught.value.kind, caught.value.hook) == (
        500,
        ErrorKind.MODEL_ERROR,
        "predict",
    )
    assert "negative values" in caught.value.message
    assert len(gateway.seen) == 1


def test_an_error_without_a_json_body_keeps_its_status(via_gateway: Client, gateway: FakeGateway) -> None:
    gateway.fail(502, times=10)  # an HTML page from a proxy
    with pytest.raises(BadGatewayError) as caught:
        via_gateway.predict("mail/twin", {"x": X})
    assert isinstance(caught.value, ServerError)
    assert isinstance(caught.value, BadGateway)
    assert (caught.value.status, caught.value.kind, caught.value.attempts) == (502, ErrorKind.BAD_GATEWAY, 4)
    assert "bad gateway" in caught.value.message


def test_an_unknown_project_is_not_found(via_gateway: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        via_gateway.predict("spam/doubler", {"x": X})
    assert caught.value.status == 404


# -- argument checks -----------------------------------------------------------------------------


def _predict(client: Client, **changes: Any) -> Callable[[], Any]:
    arguments: dict[str, Any] = {"target": "mail/doubler", "inputs": {"x": X}, **changes}
    return lambda: client.predict(**arguments)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"target": "a/b/c"}, "target", "'project/model'"),
        ({"target": ""}, "target", "not a valid name"),
        ({"target": "/doubler"}, "target", "not a valid name"),
        ({"target": "mail/dou bler"}, "target", "not a valid name"),
        ({"target": 7}, "target", "'project/model'"),
        ({"inputs": {}}, "inputs", "empty"),
        ({"inputs": X}, "inputs", "mapping"),
        ({"inputs": {"x": X.astype(np.complex64)}}, "inputs['x']", "complex64"),
        (
            {"inputs": {"x": np.array(["a", b"b", None], dtype=object)}},
            "inputs['x']",
            "element 2 is NoneType",
        ),
        ({"inputs": {"x": np.array([b"\xff"], dtype=object)}}, "inputs['x']", "not UTF-8"),
        ({"inputs": {"x": [[1, 2], [3]]}}, "inputs['x']", "not an array"),
        ({"inputs": {"": X}}, "inputs", "non-empty strings"),
        ({"version": True}, "version", "string or an integer"),
        ({"version": "a/b"}, "version", "not a valid name"),
        ({"outputs": "y"}, "outputs", "list of output names"),
        ({"outputs": ["y", "y"]}, "outputs", "twice"),
        ({"request_id": ""}, "request_id", "non-empty"),
        ({"parameters": {"k": object()}}, "parameters", "JSON"),
    ],
)
def test_bad_arguments_are_refused_before_sending(
    changes: dict[str, Any], field: str, says: str, via_gateway: Client, gateway: FakeGateway
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _predict(via_gateway, **changes)()
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == field
    assert says in caught.value.message
    assert caught.value.status is None
    assert gateway.seen == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"url": "ftp://host"}, "url"),
        ({"url": "localhost:8080"}, "url"),
        ({"url": "http://[::1"}, "url"),
        ({"url": "http://h", "retries": -1}, "retries"),
        ({"url": "http://h", "timeout": 0}, "timeout"),
        ({"url": "http://h", "backoff_s": "fast"}, "backoff_s"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Client(**arguments)
    assert caught.value.field == field


# -- metadata and readiness ------------------------------------------------------------------------


def test_metadata(client: Client, via_gateway: Client) -> None:
    meta = client.metadata("doubler")
    assert (meta["name"], meta["versions"]) == ("doubler", ["1"])
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.metadata("twin", version=1)["versions"] == ["1", "2"]
    assert via_gateway.metadata("mail/doubler") == meta
    with pytest.raises(NotFoundError):
        client.metadata("nope")


def test_ready(client: Client, via_gateway: Client, gateway: FakeGateway, closed_url: str) -> None:
    assert client.ready() is True
    assert client.ready("doubler") is True
    assert client.ready("twin", version="2") is True
    with pytest.raises(NotFoundError):
        client.ready("nope")
    assert via_gateway.ready("mail/doubler") is True
    gateway.fail(503, times=5, kind="not_ready")
    assert via_gateway.ready("mail/doubler") is False
    assert len(gateway.seen) == 2  # no retries: a probe answers now
    with Client(closed_url, trust_env=False) as nowhere:
        assert nowhere.ready() is False


# -- AsyncClient ---------------------------------------------------------------------------------


def test_async_round_trip(model_server: str) -> None:
    async def main() -> tuple[dict[str, np.ndarray], bool, dict[str, Any]]:
        async with AsyncClient(model_server, trust_env=False) as client:
            out = await client.predict("async_echo", {"f": X, "s": np.array(["a", "b"])})
            return out, await client.ready("doubler"), await client.metadata("doubler")

    out, ready, meta = asyncio.run(main())
    np.testing.assert_array_equal(out["f"], X)
    assert out["f"].dtype == np.float32
    assert out["s"].tolist() == [b"a", b"b"]
    assert ready is True
    assert meta["name"] == "doubler"


def test_async_retry_then_success(gateway_server: tuple[str, FakeGateway], gateway: FakeGateway) -> None:
    gateway.fail(503, times=2, kind="overloaded", retry_after="0")

    async def main() -> dict[str, np.ndarray]:
        async with AsyncClient(gateway_server[0], backoff_s=FAST, trust_env=False) as client:
            return await client.predict("mail/twin", {"x": X}, request_id="async-1")

    np.testing.assert_array_equal(asyncio.run(main())["y"], X + 2)
    assert [s.request_id for s in gateway.seen] == ["async-1"] * 3
    assert len({s.port for s in gateway.seen}) == 1


def test_async_retries_exhausted(gateway_server: tuple[str, FakeGateway], gateway: FakeGateway) -> None:
    gateway.fail(503, times=10, kind="not_ready")

    async def main() -> None:
        async with AsyncClient(gateway_server[0], retries=1, backoff_s=FAST, trust_env=False) as client:
            await client.predict("mail/twin", {"x": X})

    with pytest.raises(Unavailable) as caught:
        asyncio.run(main())
    assert isinstance(caught.value, modelyard.errors.ModelNotReady)
    assert (caught.value.status, caught.value.attempts, len(gateway.seen)) == (503, 2, 2)


# -- the package surface ---------------------------------------------------------------------------


def test_exports() -> None:
    assert modelyard.Client is Client
    assert modelyard.AsyncClient is AsyncClient
    assert {"Client", "AsyncClient"} <= set(modelyard.__all__)
    public = {name for name in vars(modelyard.client.errors) if name[0].isupper() and name != "ErrorKind"}
    classes = {name for name in public if isinstance(getattr(modelyard.client, name, None), type)}
    assert {name for name in classes if issubclass(getattr(modelyard.client, name), ClientError)} <= set(
        modelyard.client.__all__
    )
    with pytest.raises(AttributeError):
        _ = modelyard.NoSuchThing


def test_import_modelyard_does_not_import_httpx() -> None:
    program = (
        "import sys, modelyard\n"
        "before = 'httpx' in sys.modules\n"
        "modelyard.Client\n"
        "print(before, 'httpx' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
