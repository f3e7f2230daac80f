"""The production HTTP/1.1 front end (``Http1Server``) over raw sockets: what httpx cannot express.

Keep-alive, pipelining, ``Expect: 100-continue``, chunked bodies, the body and head limits, bad
bytes, ``Connection: close`` and HTTP/1.0, the gateway's own endpoints, drain, the idle timeout and
the in-flight limit. Every byte goes through ``socket.create_connection`` to a real server on port
0, and the answers are parsed here, so framing mistakes (a stray body, a missing close) show.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import xxhash

from modelyard.gateway.app import build_service
from modelyard.gateway.http1 import MAX_HEAD_BYTES, Http1Server
from modelyard.gateway.settings import GatewaySettings
from modelyard.web.listen import bind_socket
from tests.gateway.support import (
    Answer,
    GatewayThread,
    GatewayWorld,
    Raw,
    StubReplica,
    request,
    wait_for,
    world,
)

PREDICT = "/projects/mail/models/{model}:predict"
ERROR_KEYS = {"error", "kind", "field"}


def predict(
    model: str = "spam", body: bytes = b'{"instances": [[1.0]]}', headers: dict[str, str] | None = None
) -> bytes:
    return request("POST", PREDICT.format(model=model), body, headers)


def rid(request_id: str) -> dict[str, str]:
    return {"x-request-id": request_id}


def chunked(*chunks: bytes, end: bool = True) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return framed + (b"0\r\n\r\n" if end else b"")


def requests_total(metrics_text: str) -> dict[str, float]:
    """``modelyard_gateway_requests_total`` samples by their label text."""
    prefix = "modelyard_gateway_requests_total{"
    found = {}
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].rsplit("} ", 1)
            found[labels] = float(value)
    return found


@pytest.fixture
def env(tmp_path: Path) -> Iterator[GatewayWorld]:
    with world(tmp_path) as created:
        yield created


def routed(env: GatewayWorld, model: str = "spam") -> StubReplica:
    """A replica named after ``model``, the only version (v1) of mail/``model``."""
    replica = env.replica(model)
    env.store.set_weights("mail", model, {"v1": 1})
    env.store.set_replicas("mail", model, "v1", [replica.url])
    return replica


def body_hash(answer: Answer) -> str:
    return str(answer.json()["body_hash"])


def assert_error(answer: Answer, status: int, kind: str, field: str) -> dict[str, str]:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    content = answer.json()
    assert set(content) == ERROR_KEYS, content
    assert (content["kind"], content["field"]) == (kind, field), content
    return dict(content)


# -- connections ---------------------------------------------------------------------------------


def test_keep_alive_answers_several_requests_on_one_connection(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    for i in range(4):
        body = b'{"instances": [[%d]]}' % i
        client.send(predict(body=body, headers=rid(f"keep-{i}")))
        answer = client.answer()
        assert answer.status == 200
        assert "connection" not in answer.headers
        assert answer.headers["x-request-id"] == f"keep-{i}"
        assert body_hash(answer) == xxhash.xxh3_64_hexdigest(body)
    client.send(request("GET", "/health/live"))
    assert client.answer().json() == {"live": True}
    assert len(replica.requests) == 4
    assert gateway.service.connections == 1  # every answer above came on the one connection


def test_pipelined_requests_are_answered_in_order_each_with_its_request_id(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    slow = routed(env, "slow")
    slow.delay_s = 0.3  # answered concurrently, the fast one would overtake the slow ones
    routed(env, "fast")
    gateway = env.gateway()
    sent = [("p1", "slow", b'{"n": 1}'), ("p2", "fast", b'{"n": 2}'), ("p3", "slow", b'{"n": 3}')]
    client = connect(gateway.url)
    client.send(b"".join(predict(model, body, rid(name)) for name, model, body in sent))  # one write
    for name, model, body in sent:
        answer = client.answer()
        assert answer.status == 200
        assert answer.headers["x-request-id"] == name
        assert answer.json()["request_id"] == name
        assert answer.json()["replica"] == model
        assert body_hash(answer) == xxhash.xxh3_64_hexdigest(body)
    assert not client.has_unread_bytes()


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    body = b'{"instances": [[1.0, 2.0]]}'
    client = connect(gateway.url)
    head = {"content-length": str(len(body)), "expect": "100-continue"}
    client.send(request("POST", PREDICT.format(model="spam"), headers=head))  # the head only
    interim = client.answer()
    assert interim.status == 100
    assert replica.requests == []
    client.send(body)
    final = client.answer()
    assert final.status == 200
    assert body_hash(final) == xxhash.xxh3_64_hexdigest(body)
    # The gateway answered the expectation: a replica seeing it would send its own 100 Continue,
    # which the gateway's client would take for the final answer.
    assert "expect" not in replica.requests[0][1]


def test_chunked_request_body_is_forwarded_intact(env: GatewayWorld, connect: Callable[[str], Raw]) -> None:
    replica = routed(env)
    gateway = env.gateway()
    body = bytes(range(256)) * 40  # binary, with CR/LF bytes inside the chunks
    client = connect(gateway.url)
    client.send(request("POST", PREDICT.format(model="spam"), headers={"transfer-encoding": "chunked"}))
    for piece in (body[:1], body[1:1000], body[1000:7000], body[7000:]):
        client.send(chunked(piece, end=False))
    client.send(chunked())
    answer = client.answer()
    assert answer.status == 200
    assert body_hash(answer) == xxhash.xxh3_64_hexdigest(body)
    forwarded = replica.requests[0][1]
    assert forwarded["content-length"] == str(len(body))
    assert "transfer-encoding" not in forwarded


# -- limits and bad requests ---------------------------------------------------------------------


@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100"])
def test_content_length_over_the_limit_is_413_without_reading_the_body(
    env: GatewayWorld, connect: Callable[[str], Raw], expect: bool
) -> None:
    replica = routed(env)
    gateway = env.gateway(max_body_bytes=1000)
    client = connect(gateway.url)
    head = {"content-length": "5000", **({"expect": "100-continue"} if expect else {})}
    client.send(request("POST", PREDICT.format(model="spam"), headers=head))  # the body is never sent
    answer = client.answer()  # not a 100 Continue: the body is not wanted
    content = assert_error(answer, 413, "too_large", "body")
    assert "5000" in content["error"]
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()
    assert replica.requests == []


def test_chunked_body_growing_past_the_limit_is_413_counted_once(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway(max_body_bytes=1000)
    client = connect(gateway.url)
    client.send(request("POST", PREDICT.format(model="spam"), headers={"transfer-encoding": "chunked"}))
    client.send(chunked(b"a" * 600, b"b" * 600, end=False))  # no end: the limit, not the end, answers
    answer = client.answer()
    assert_error(answer, 413, "too_large", "body")
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()
    assert replica.requests == []
    counted = requests_total(httpx.get(gateway.admin_url + "/metrics").text)
    assert counted == {'code="413",model="",project="",version=""': 1.0}


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
        b"GET /health/live HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\ncontent-length: twelve\r\n\r\n",
        b"GET /health/live HTTP/4.2\r\n\r\n",
    ],
    ids=["word", "tls", "header", "content-length", "version"],
)
def test_malformed_request_is_400_with_the_error_body_and_closes(
    env: GatewayWorld, connect: Callable[[str], Raw], garbage: bytes
) -> None:
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(garbage)
    answer = client.answer()
    content = assert_error(answer, 400, "invalid_input", "request")
    assert content["error"].startswith("malformed HTTP request")
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()


def test_requests_pipelined_before_a_malformed_one_are_answered_first(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.delay_s = 0.2  # still in flight when the garbage is parsed
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(predict(headers=rid("first")) + b"GARBAGE\r\n\r\n")
    first = client.answer()
    assert first.status == 200
    assert first.headers["x-request-id"] == "first"
    assert_error(client.answer(), 400, "invalid_input", "request")
    assert client.closed_by_server()


@pytest.mark.parametrize(
    "headers",
    [
        {f"x-filler-{i}": "f" * 1024 for i in range(MAX_HEAD_BYTES // 1024 + 2)},  # over 64 KiB
        {f"x-small-{i}": "s" for i in range(101)},  # over 100 headers
    ],
    ids=["bytes", "count"],
)
def test_oversized_head_is_400_and_closes(
    env: GatewayWorld, connect: Callable[[str], Raw], headers: dict[str, str]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(predict(headers=headers))
    answer = client.answer()
    content = assert_error(answer, 400, "invalid_input", "headers")
    assert "request head too large" in content["error"]
    assert client.closed_by_server()
    assert replica.requests == []


# -- closing -------------------------------------------------------------------------------------


def test_connection_close_from_the_client_is_answered_then_closed(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(predict(headers={"connection": "close"}))
    answer = client.answer()
    assert answer.status == 200
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()


def test_http_1_0_without_keep_alive_is_closed_after_the_answer(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(request("GET", "/health/live", version="1.0"))
    answer = client.answer()
    assert (answer.status, answer.json()) == (200, {"live": True})
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()


# -- routes: methods, unknown paths, the gateway's own endpoints ---------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/projects/mail/models/spam:predict"),
        ("PUT", "/projects/mail/models/spam/versions/v1/infer"),
        ("DELETE", "/projects/mail/models/spam"),
        ("PATCH", "/health/live"),
    ],
)
def test_wrong_method_is_405_naming_it_and_keeps_the_connection(
    env: GatewayWorld, connect: Callable[[str], Raw], method: str, path: str
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(request(method, path, b'{"ignored": true}'))  # a body nobody reads is skipped
    answer = client.answer()
    content = assert_error(answer, 405, "method_not_allowed", "method")
    assert f"method {method} is not allowed on {path}" in content["error"]
    assert answer.headers["allow"] in ("POST", "GET", "GET, HEAD")  # HTTP requires it on a 405
    client.send(request("GET", "/health/live"))  # the refused body did not desync the stream
    assert client.answer().json() == {"live": True}
    assert replica.requests == []


@pytest.mark.parametrize(
    "path", ["/nope", "/projects/mail/models", "/projects/mail/models/spam/extra", "/health"]
)
def test_unknown_path_is_404(env: GatewayWorld, connect: Callable[[str], Raw], path: str) -> None:
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(request("GET", path))
    content = assert_error(client.answer(), 404, "not_found", "path")
    assert content["error"] == f"no route for GET {path}"


def test_health_probes(env: GatewayWorld, connect: Callable[[str], Raw]) -> None:
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(request("GET", "/health/live") + request("GET", "/health/ready"))
    assert client.answer().json() == {"live": True}
    ready = client.answer()
    assert (ready.status, ready.json()) == (200, {"ready": True})


def test_head_is_answered_without_a_body(env: GatewayWorld, connect: Callable[[str], Raw]) -> None:
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(request("HEAD", "/health/live") + request("GET", "/health/live"))
    head = client.answer(head=True)
    assert head.status == 200
    assert head.headers["content-length"] == str(len(b'{"live":true}'))
    following = client.answer()  # a body after the HEAD answer would be read as this answer
    assert (following.status, following.json()) == (200, {"live": True})
    assert not client.has_unread_bytes()


def test_metrics_are_prometheus_text_counting_requests(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(predict() + predict())
    assert [client.answer().status for _ in range(2)] == [200, 200]  # counted before they are sent
    admin = connect(gateway.admin_url)
    admin.send(request("GET", "/metrics"))
    metrics = admin.answer()
    assert metrics.status == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    text = metrics.body.decode()
    assert "# TYPE modelyard_gateway_requests_total counter" in text
    assert requests_total(text) == {'code="200",model="spam",project="mail",version="v1"': 2.0}


@pytest.mark.parametrize(("idle_poll_us", "polls"), [(200, True), (0, False)])
def test_idle_polling_rounds_are_counted_in_the_metrics(
    env: GatewayWorld, connect: Callable[[str], Raw], idle_poll_us: int, polls: bool
) -> None:
    routed(env)
    gateway = env.gateway(idle_poll_us=idle_poll_us)
    client = connect(gateway.url)
    for _ in range(3):  # one at a time: the only case that polls
        client.send(predict())
        assert client.answer().status == 200
    time.sleep(0.2)  # the counter is brought up to date at each routing poll (every 0.05 s here)
    admin = connect(gateway.admin_url)
    admin.send(request("GET", "/metrics"))
    text = admin.answer().body.decode()
    [rounds] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("modelyard_gateway_idle_poll_rounds_total ")
    ]
    assert (rounds > 0) is polls


def test_routing_endpoint_shows_the_revision_and_routes_on_the_admin_listener(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.admin_url)
    client.send(request("GET", "/-/routing"))
    answer = client.answer()
    assert answer.status == 200
    content = answer.json()
    assert content["revision"] == env.store.revision()
    [route] = content["routes"]
    assert (route["project"], route["model"]) == ("mail", "spam")
    assert [(v["version"], v["weight"], v["replicas"]) for v in route["versions"]] == [
        ("v1", 1, [replica.url])
    ]


# -- drain, idle timeout, overload ---------------------------------------------------------------


def test_drain_finishes_the_request_in_flight_and_closes_idle_connections(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.delay_s = 1.0
    gateway = env.gateway()
    idle = connect(gateway.url)
    idle.send(request("GET", "/health/live"))
    assert idle.answer().status == 200  # a kept-alive connection with nothing in flight
    busy = connect(gateway.url)
    busy.send(predict(headers=rid("in-flight")))
    assert wait_for(lambda: len(replica.requests) == 1)
    draining = asyncio.run_coroutine_threadsafe(gateway.server.drain(10.0), env.loop.loop)
    assert idle.closed_by_server()
    assert not busy.has_unread_bytes()  # closed while the slow request is still being answered
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=5).close()
    answer = busy.answer()
    assert answer.status == 200
    assert answer.headers["x-request-id"] == "in-flight"
    assert answer.headers["connection"] == "close"
    assert busy.closed_by_server()
    draining.result(timeout=10)
    assert gateway.server.connections == set()


class _ShortKeepAlive(GatewayThread):
    """GatewayThread's front end with a short keep-alive timeout (GatewayThread keeps the 75 s)."""

    def __init__(self, env: GatewayWorld, keepalive_timeout_s: float) -> None:
        settings = GatewaySettings(control=env.control, refresh_interval_s=0.05, log_sink=str(env.log_path))
        self.service = build_service(settings, env.store)
        self._loop = env.loop
        self.server = Http1Server(self.service, keepalive_timeout_s=keepalive_timeout_s)
        self.admin = Http1Server(self.service, admin=True)  # not started: drained with the server
        sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        env.gateways.append(self)  # stopped with the world, whatever happens

        async def start() -> None:
            await self.service.start()
            await self.server.start(sock)

        env.loop.call(start())


def test_idle_connection_is_closed_after_the_keep_alive_timeout_but_a_busy_one_is_not(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.delay_s = 0.9  # three times the timeout: in flight, the connection is not idle
    gateway = _ShortKeepAlive(env, keepalive_timeout_s=0.3)
    busy = connect(gateway.url)
    busy.send(predict(headers=rid("slow")))
    idle = connect(gateway.url)
    sent = time.monotonic()
    idle.send(request("GET", "/health/live"))
    assert idle.answer().status == 200
    assert idle.closed_by_server(timeout=5)
    assert time.monotonic() - sent >= 0.3  # its last activity came after `sent`: not closed early
    answer = busy.answer()
    assert (answer.status, answer.headers["x-request-id"]) == (200, "slow")
    assert "connection" not in answer.headers
    assert busy.closed_by_server(timeout=5)  # and idle in its turn


def test_beyond_max_in_flight_requests_get_503_with_retry_after(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.delay_s = 1.0
    gateway = env.gateway(max_in_flight=2)
    first, second = connect(gateway.url), connect(gateway.url)
    first.send(predict(headers=rid("a")))
    second.send(predict(headers=rid("b")))
    assert wait_for(lambda: len(replica.requests) == 2)
    third = connect(gateway.url)
    third.send(predict(headers=rid("c")))
    refused = third.answer()
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["kind"] == "overloaded"
    assert [first.answer().status, second.answer().status] == [200, 200]
    replica.delay_s = 0.0
    third.send(predict(headers=rid("d")))  # room again, and the refused connection is still usable
    assert third.answer().status == 200
    assert len(replica.requests) == 3


def test_an_endless_header_line_is_cut_off_and_closed(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(b"POST " + PREDICT.format(model="spam").encode() + b" HTTP/1.1\r\nx-long: ")
    answer = None
    try:
        for _ in range(40):  # 40 x 16 KiB of one header value that never ends
            client.send(b"a" * 16384)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed on us mid-send: that is the point
    answer = client.answer()
    content = assert_error(answer, 400, "invalid_input", "headers")
    assert "request head too large" in content["error"]
    assert replica.requests == []


def test_a_replicas_interim_100_continue_is_not_taken_for_its_answer(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.interim = True
    gateway = env.gateway()
    client = connect(gateway.url)
    for i in range(3):
        client.send(predict(headers={**rid(f"i{i}"), "expect": "100-continue"}))
        first = client.answer()
        if first.status == 100:  # the gateway's own interim answer to the caller's expectation
            first = client.answer()
        assert first.status == 200
        assert first.json()["request_id"] == f"i{i}"
    assert all("expect" not in headers for _, headers, _ in replica.requests)  # never forwarded


def test_clients_that_leave_before_their_answer_leave_nothing_in_flight(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.delay_s = 0.3
    gateway = env.gateway()
    for i in range(3):  # three in flight at once: the worker holds writes (gateway/batching.py)
        client = connect(gateway.url)
        client.send(predict(headers=rid(f"gone-{i}")))
        client.sock.shutdown(socket.SHUT_WR)  # and leaves before the replica answers
        client.close()
    assert wait_for(lambda: len(replica.requests) == 3)
    assert wait_for(lambda: gateway.service.in_flight == 0, timeout=5), gateway.service.in_flight
    replica.delay_s = 0.0
    stayed = connect(gateway.url)
    stayed.send(predict(headers=rid("stayed")))
    answer = stayed.answer()
    assert (answer.status, answer.headers["x-request-id"]) == (200, "stayed")
    assert gateway.service.batcher.hold is False  # back to writing at once
