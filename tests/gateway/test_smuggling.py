"""Request smuggling and slow clients against the production front end (``http1.py``): what held
when the gateway was probed, kept so that it keeps holding.

A request whose framing is ambiguous (Content-Length and Transfer-Encoding together, two
Content-Lengths, a folded header line) is refused with 400 and the connection closed: nothing is
forwarded, and nothing hidden in its body is read as a request of its own. Whatever a caller sent,
a replica gets a request framed by the gateway (one Content-Length, no Transfer-Encoding). A
replica's ambiguous answer is a 502, never passed on. Clients that send their heads slowly
(slowloris) hold only their own connections: others are answered at once, and a head that stalls
is closed after the keep-alive timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.gateway.support import GatewayWorld, Raw, StubReplica, request

PREDICT = "/projects/mail/models/spam:predict"
HEAD = f"POST {PREDICT} HTTP/1.1\r\nhost: gateway\r\n".encode()
# What a smuggler hides in a body: a whole second request, which would reach the replica (or the
# next caller's connection) if the gateway and the replica disagreed on where the first one ends.
HIDDEN = request("POST", PREDICT, b'{"instances": [["smuggled"]]}', {"x-request-id": "smuggled"})

SMUGGLING = {
    "cl-te": HEAD
    + b"content-length: %d\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n%s" % (5 + len(HIDDEN), HIDDEN),
    "te-cl": HEAD + b"transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n" + HIDDEN,
    "cl-cl": HEAD + b"content-length: 0\r\ncontent-length: %d\r\n\r\n%s" % (len(HIDDEN), HIDDEN),
    "cl-cl-same": HEAD + b"content-length: 2\r\ncontent-length: 2\r\n\r\n{}" + HIDDEN,
    "cl-list": HEAD + b"content-length: 2, 2\r\n\r\n{}" + HIDDEN,
    "obs-fold": HEAD + b"x-folded: a\r\n b\r\ncontent-length: 2\r\n\r\n{}" + HIDDEN,
    "obs-fold-te": HEAD + b"transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
    "te-not-chunked-last": HEAD + b"transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n" + HIDDEN,
    "te-xchunked": HEAD + b"transfer-encoding: xchunked\r\n\r\n0\r\n\r\n" + HIDDEN,
    "space-before-colon": HEAD + b"content-length : 2\r\n\r\n{}" + HIDDEN,
    "bare-lf": HEAD.replace(b"\r\n", b"\n") + b"content-length: 2\n\n{}" + HIDDEN,
}


def routed(env: GatewayWorld) -> StubReplica:
    replica = env.replica("v1")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [replica.url])
    return replica


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_an_ambiguously_framed_request_is_400_and_closes_with_nothing_forwarded(
    env: GatewayWorld, connect: Callable[[str], Raw], name: str
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(SMUGGLING[name])
    answer = client.answer()
    assert answer.status == 400, answer
    content = answer.json()
    assert (content["kind"], content["field"]) == ("invalid_input", "request"), content
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()  # the hidden request is never read
    time.sleep(0.05)
    assert replica.requests == []


def test_a_replica_gets_a_request_framed_by_the_gateway_whatever_the_caller_sent(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway()
    client = connect(gateway.url)
    client.send(HEAD + b"transfer-encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")  # legal
    assert client.answer().status == 200
    [headers] = replica.header_lists
    framing = [(name, value) for name, value in headers if name in ("content-length", "transfer-encoding")]
    assert framing == [("content-length", "2")]


def test_a_replicas_ambiguously_framed_answer_is_a_502_and_the_connection_stays_in_step(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    replica.extra_headers = b"transfer-encoding: chunked\r\n"  # besides its content-length
    gateway = env.gateway(retries=0)
    client = connect(gateway.url)
    client.send(request("POST", PREDICT, b"{}"))
    answer = client.answer()
    assert (answer.status, answer.json()["kind"]) == (502, "bad_gateway")
    replica.extra_headers = b""
    client.send(request("POST", PREDICT, b"{}", {"x-request-id": "after"}))
    after = client.answer()
    assert (after.status, after.json()["request_id"]) == (200, "after")
    assert not client.has_unread_bytes()


# -- slow clients ---------------------------------------------------------------------------------


def test_slow_heads_hold_only_their_own_connections(env: GatewayWorld, connect: Callable[[str], Raw]) -> None:
    replica = routed(env)
    gateway = env.gateway()
    slow = [connect(gateway.url) for _ in range(64)]
    for client in slow:
        client.send(HEAD + b"x-slow: ")
    for round_ in range(3):
        for client in slow:
            client.send(b"a")  # a byte at a time, never the end of the head
        started = time.monotonic()
        fresh = connect(gateway.url)
        fresh.send(request("POST", PREDICT, b"{}", {"x-request-id": f"fresh-{round_}"}))
        answer = fresh.answer()
        assert answer.status == 200
        assert time.monotonic() - started < 1.0
    assert len(replica.requests) == 3  # the slow heads sent nothing on


def test_a_stalled_head_is_closed_after_the_keep_alive_timeout(
    env: GatewayWorld, connect: Callable[[str], Raw]
) -> None:
    replica = routed(env)
    gateway = env.gateway(keepalive_timeout_s=0.3)
    stalled = connect(gateway.url)
    stalled.send(HEAD + b"content-length: 2\r\n")  # and then nothing
    started = time.monotonic()
    assert stalled.closed_by_server(timeout=5)
    assert time.monotonic() - started >= 0.25
    stalled_body = connect(gateway.url)
    stalled_body.send(HEAD + b"content-length: 100\r\n\r\n{")  # a body that stops coming
    assert stalled_body.closed_by_server(timeout=5)
    assert replica.requests == []
