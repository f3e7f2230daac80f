"""The headers naming the route version that answered, through both front ends.

``x-modelyard-route-version`` names the gateway route's version (``/versions/{v}``), never the
registry's version number or the package manifest's version (docs/versions.md); the old name
``x-modelyard-version`` is still sent, with the same value, for one release. Each test runs against
the production HTTP/1.1 server (``http1.py``) and the ASGI adapter (``app.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modelyard.gateway.app import GatewayApp, build_service
from modelyard.gateway.balance import ReplicaPool
from modelyard.gateway.choice import VersionHeaders
from modelyard.gateway.router import Router
from modelyard.gateway.settings import GatewaySettings
from modelyard.routing.table import ModelRoute, RoutingTable, VersionRoute
from tests.gateway.support import GatewayWorld

PREDICT = "/projects/mail/models/spam:predict"
INFER_V2 = "/projects/mail/models/spam/versions/v2/infer"
BODY = b'{"instances": [[1.0]]}'
JSON = {"content-type": "application/json"}

Post = Callable[[str], httpx.Response]


class AsgiGateway:
    """``GatewayApp`` on the world's loop thread, called in process through httpx's ASGI transport."""

    def __init__(self, env: GatewayWorld) -> None:
        settings = GatewaySettings(control=env.control, refresh_interval_s=0.05, log_sink=str(env.log_path))
        self.app = GatewayApp(build_service(settings, env.store))
        self.loop = env.loop
        self.loop.call(self.app.service.start())  # what the app's lifespan start-up does
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw")

    def post(self, path: str) -> httpx.Response:
        response: httpx.Response = self.loop.call(self.client.post(path, content=BODY, headers=JSON))
        return response

    def close(self) -> None:
        self.loop.call(self.client.aclose())
        self.loop.call(self.app.service.stop())


@pytest.fixture(params=["http1", "asgi"])
def post(request: pytest.FixtureRequest, env: GatewayWorld, client: httpx.Client) -> Iterator[Post]:
    """POST a body to the gateway's ``path`` through one front end; the routing table is read when
    the gateway starts, so each test writes its routes before its first call."""
    front_end: dict[str, Any] = {}

    def call(path: str) -> httpx.Response:
        if not front_end:
            if request.param == "http1":
                front_end["url"] = env.gateway().url
            else:
                front_end["asgi"] = AsgiGateway(env)
        if "asgi" in front_end:
            return front_end["asgi"].post(path)  # type: ignore[no-any-return]
        return client.post(front_end["url"] + path, content=BODY, headers=JSON)

    yield call
    if "asgi" in front_end:
        front_end["asgi"].close()


def _route(env: GatewayWorld, v1: str, v2: str) -> None:
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [v1])
    env.store.set_replicas("mail", "spam", "v2", [v2])


def test_an_answer_names_its_route_version_under_the_new_and_the_old_header(
    env: GatewayWorld, post: Post
) -> None:
    _route(env, env.replica("v1").url, env.replica("v2").url)
    weighted, pinned = post(PREDICT), post(INFER_V2)
    assert (weighted.status_code, weighted.json()["replica"]) == (200, "v1")
    assert (pinned.status_code, pinned.json()["replica"]) == (200, "v2")
    for response, version in ((weighted, "v1"), (pinned, "v2")):
        # httpx joins repeated headers with ", ": an exact value also says each was sent once
        assert response.headers["x-modelyard-route-version"] == version
        assert response.headers["x-modelyard-version"] == version  # deprecated, same value
        assert "x-modelyard-model-ref" not in response.headers  # the table has no registry ref


def test_an_error_after_routing_names_the_version_and_one_before_it_does_not(
    env: GatewayWorld, post: Post
) -> None:
    dead = env.replica("v2")
    dead.kill()
    _route(env, env.replica("v1").url, dead.url)
    unreachable = post(INFER_V2)
    assert unreachable.status_code == 502
    assert unreachable.headers["x-modelyard-route-version"] == "v2"
    assert unreachable.headers["x-modelyard-version"] == "v2"
    unknown = post("/projects/mail/models/spam/versions/v9/infer")
    assert unknown.status_code == 404
    assert "x-modelyard-route-version" not in unknown.headers
    assert "x-modelyard-version" not in unknown.headers


def test_version_headers_are_made_once_per_version_when_the_table_loads() -> None:
    made = VersionHeaders.of("v2")
    assert made.pairs == ((b"x-modelyard-route-version", b"v2"), (b"x-modelyard-version", b"v2"))
    assert made.lines == b"x-modelyard-route-version: v2\r\nx-modelyard-version: v2\r\n"
    route = ModelRoute("mail", "spam", (VersionRoute("v1", 1, replicas=("http://127.0.0.1:9",)),))
    router = Router(RoutingTable(1, {("mail", "spam"): route}), lambda *key: ReplicaPool(key[3]))
    first, second = router.choose("mail", "spam", None), router.choose("mail", "spam", "v1")
    assert first.version_headers == VersionHeaders.of("v1")
    assert second.version_headers is first.version_headers  # nothing encoded per request
