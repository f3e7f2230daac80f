"""What the gateway keeps from callers and callers from it, through both front ends.

Each test runs against the production HTTP/1.1 server (``http1.py``) and the ASGI adapter
(``app.py``): the admin listener is the only place that shows replica URLs (``/-/routing``,
``/metrics``); headers named in ``Connection`` and the hop-by-hop ones are not passed on, in
either direction (RFC 9110 section 7.6.1); no ``x-modelyard-*`` header comes from a caller; and a
path is routed as it was sent, so ``%2F`` never makes a segment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelyard.gateway.app import GatewayApp, build_service
from modelyard.gateway.settings import GatewaySettings
from tests.gateway.support import GatewayWorld, StubReplica, wait_for

PREDICT = "/projects/mail/models/spam:predict"
BODY = b'{"instances": [[1.0]]}'
JSON = {"content-type": "application/json"}


class Front:
    """One front end of a gateway on the world's routing store: ``call`` its public side,
    ``admin`` its admin side. Started on first use, so a test writes its routes first."""

    def __init__(self, env: GatewayWorld, kind: str, client: httpx.Client) -> None:
        self.env, self.kind, self.client = env, kind, client
        self._urls: tuple[str, str] | None = None
        self._app: GatewayApp | None = None
        self._clients: tuple[httpx.AsyncClient, httpx.AsyncClient] | None = None

    def _start(self) -> None:
        if self.kind == "http1":
            gateway = self.env.gateway()
            self._urls = (gateway.url, gateway.admin_url)
            return
        settings = GatewaySettings(
            control=self.env.control, refresh_interval_s=0.05, log_sink=str(self.env.log_path)
        )
        self._app = GatewayApp(build_service(settings, self.env.store))
        self.env.loop.call(self._app.service.start())  # what the app's lifespan start-up does
        self._clients = (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=self._app), base_url="http://gw"),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=self._app.admin_app()), base_url="http://gw"),
        )

    def call(self, method: str, path: str, *, admin: bool = False, **options: Any) -> httpx.Response:
        if self._urls is None and self._clients is None:
            self._start()
        if self._urls is not None:
            url = self._urls[1 if admin else 0] + path
            return self.client.request(method, url, **options)
        assert self._clients is not None
        client = self._clients[1 if admin else 0]
        response: httpx.Response = self.env.loop.call(client.request(method, path, **options))
        return response

    def predict(self, path: str = PREDICT, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.call("POST", path, content=BODY, headers={**JSON, **(headers or {})})

    def close(self) -> None:
        if self._clients is not None and self._app is not None:
            for client in self._clients:
                self.env.loop.call(client.aclose())
            self.env.loop.call(self._app.service.stop())


@pytest.fixture(params=["http1", "asgi"])
def front(request: pytest.FixtureRequest, env: GatewayWorld, client: httpx.Client) -> Iterator[Front]:
    made = Front(env, request.param, client)
    yield made
    made.close()


def routed(env: GatewayWorld) -> StubReplica:
    """mail/spam: v1 (weight 1) and v2 (weight 0, reachable pinned), one stub replica each."""
    v1, v2 = env.replica("v1"), env.replica("v2")
    env.store.set_weights("mail", "spam", {"v1": 1, "v2": 0})
    env.store.set_replicas("mail", "spam", "v1", [v1.url])
    env.store.set_replicas("mail", "spam", "v2", [v2.url])
    return v1


def assert_error(response: httpx.Response, status: int, kind: str, field: str) -> str:
    assert response.status_code == status, response.text
    content = response.json()
    assert (content["kind"], content["field"]) == (kind, field), content
    return str(content["error"])


# -- the admin listener ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/-/routing", "/metrics"])
def test_what_names_replica_urls_is_a_404_on_the_public_side(
    env: GatewayWorld, front: Front, path: str
) -> None:
    replica = routed(env)
    assert front.predict().status_code == 200  # the metrics now hold the replica's URL
    for method in ("GET", "HEAD", "POST"):
        answer = front.call(method, path)
        assert answer.status_code == 404
        assert replica.url.encode() not in answer.content
    message = assert_error(front.call("GET", path), 404, "not_found", "path")
    assert message == f"no route for GET {path}: it is served on the gateway's admin port only"
    assert front.call("GET", "/health/ready").json() == {"ready": True}  # the probes stay public
    assert front.call("GET", "/v2/health/live").json() == {"live": True}


def test_the_admin_side_shows_the_routing_table_and_metrics_and_forwards_nothing(
    env: GatewayWorld, front: Front
) -> None:
    replica = routed(env)
    assert front.predict().status_code == 200
    routing = front.call("GET", "/-/routing", admin=True)
    assert routing.status_code == 200
    [route] = routing.json()["routes"]
    assert {v["version"]: v["replicas"] for v in route["versions"]}["v1"] == [replica.url]
    metrics = front.call("GET", "/metrics", admin=True)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f'replica="{replica.url}"' in metrics.text  # why it is kept off the public side
    refused = front.call("POST", "/metrics", admin=True)
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
    assert front.call("GET", "/health/live", admin=True).json() == {"live": True}
    before = len(replica.requests)
    for path in (PREDICT, "/projects/mail/models/spam"):
        assert_error(front.call("POST", path, admin=True, content=BODY), 404, "not_found", "path")
    assert len(replica.requests) == before


# -- hop-by-hop headers ---------------------------------------------------------------------------


def test_headers_the_connection_header_names_and_hop_by_hop_ones_are_not_forwarded(
    env: GatewayWorld, front: Front
) -> None:
    replica = routed(env)
    sent = {
        "connection": "keep-alive, X-Secret,x-other , close-not",
        "x-secret": "1", "x-other": "2", "close-not": "3",
        "keep-alive": "timeout=5", "te": "trailers", "trailer": "x-t", "proxy-authorization": "Basic Zm9v",
        "proxy-connection": "keep-alive", "x-kept": "yes",
    }  # fmt: skip
    assert front.predict(headers=sent).status_code == 200
    forwarded = {name for name, _ in replica.header_lists[-1]}
    dropped = set(sent) - {"x-kept"}
    assert not forwarded & dropped, forwarded & dropped
    assert "x-kept" in forwarded
    assert [name for name, _ in replica.header_lists[-1]].count("content-length") == 1


def test_a_request_id_the_connection_header_names_is_replaced(env: GatewayWorld, front: Front) -> None:
    replica = routed(env)
    answer = front.predict(headers={"connection": "x-request-id", "x-request-id": "hop-only"})
    assert answer.status_code == 200
    given = answer.headers["x-request-id"]
    assert given != "hop-only"
    assert replica.requests[-1][1]["x-request-id"] == given  # the caller and the replica agree


def test_headers_the_replicas_connection_header_names_are_not_passed_back(
    env: GatewayWorld, front: Front
) -> None:
    replica = routed(env)
    replica.extra_headers = (
        b"connection: keep-alive, X-Internal\r\nx-internal: 10.0.0.5\r\nkeep-alive: timeout=5\r\n"
        b"proxy-authenticate: Basic\r\nx-public: ok\r\n"
    )
    answer = front.predict()
    assert answer.status_code == 200
    for name in ("x-internal", "keep-alive", "proxy-authenticate"):
        assert name not in answer.headers, name
    assert answer.headers["x-public"] == "ok"
    assert answer.headers.get("connection", "keep-alive") == "keep-alive"  # ours, if any


# -- x-modelyard-* headers ------------------------------------------------------------------------


def test_x_modelyard_headers_from_callers_are_dropped_and_a_mirror_gets_only_ours(
    env: GatewayWorld, front: Front
) -> None:
    replica = routed(env)
    shadow = env.replica("shadow")
    env.store.set_replicas("mail", "spam", "v3", [shadow.url])
    env.store.set_mirror("mail", "spam", "v3", 1.0)
    forged = {"x-modelyard-mirror": "1", "X-Modelyard-User": "eve", "x-modelyard-route-version": "v9"}
    answer = front.predict(headers=forged)
    assert answer.status_code == 200
    assert answer.json()["mirror"] is None  # the primary was not told it is a mirror
    assert not [name for name, _ in replica.header_lists[-1] if name.startswith("x-modelyard-")]
    assert answer.headers["x-modelyard-route-version"] == "v1"
    assert wait_for(lambda: len(shadow.header_lists) == 1)
    ours = [(name, value) for name, value in shadow.header_lists[0] if name.startswith("x-modelyard-")]
    assert ours == [("x-modelyard-mirror", "1")]


# -- paths as sent --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/projects/mail/models/spam%2Fversions%2Fv2:predict", "model"),  # was: pinned to v2
        ("/projects/mail/models/spam%2fversions%2fv2:predict", "model"),
        ("/projects/mail%2Fmodels%2Fspam/models/spam:predict", "project"),
        ("/projects/mail/models/spam/versions/v2%2F..%2Fv1/infer", "version"),
    ],
)
def test_an_encoded_slash_in_a_name_is_a_400_never_a_segment(
    env: GatewayWorld, front: Front, path: str, field: str
) -> None:
    routed(env)
    message = assert_error(front.predict(path), 400, "invalid_input", "path")
    assert f"the {field} in the path" in message
    assert "encodes a '/'" in message
    assert all(not replica.requests for replica in env.replicas)


def test_other_encoded_characters_still_route_and_encoded_delimiters_do_not_select(
    env: GatewayWorld, front: Front
) -> None:
    replica = routed(env)
    answer = front.predict("/projects/m%61il/models/sp%61m:predict")
    assert (answer.status_code, answer.json()["replica"]) == (200, "v1")
    # ":predict" encoded is part of the name, so this is a metadata path: POST is not its method
    assert front.predict("/projects/mail/models/spam%3Apredict").status_code == 405
    assert front.call("GET", "/health%2Flive").status_code == 404
    assert front.call("GET", "/-%2Frouting", admin=True).status_code == 404
    assert len(replica.requests) == 1
