"""Per-project API keys end to end: keys made in the control-plane database, checked by a running
gateway (the HTTP/1.1 front end ``serve`` runs, and the ASGI app) in front of real replicas."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard.client import AuthenticationError, PermissionDeniedError, RateLimitedError
from modelyard.gateway.app import build_gateway_app
from modelyard.gateway.settings import GatewaySettings
from tests.gateway.support import GatewayWorld, StubReplica, predict

SPAM = "/projects/mail/models/spam"
OPEN = "/projects/open/models/echo"
Post = Callable[..., httpx.Response]


def keyed_world(env: GatewayWorld) -> tuple[StubReplica, StubReplica, dict[str, str]]:
    """Two routed projects, ``mail`` with keys and ``open`` without; the keys, by name."""
    mail, other = env.replica("mail"), env.replica("open")
    for project, model, replica in (("mail", "spam", mail), ("open", "echo", other)):
        env.store.set_weights(project, model, {"v1": 1})
        env.store.set_replicas(project, model, "v1", [replica.url])
    _, limited = env.store.create_key("mail", "web", rate_per_s=0.5, burst=2)
    _, ads = env.store.create_key("ads", "batch")
    return mail, other, {"mail": limited, "ads": ads}


def check_keys(post: Post, mail: StubReplica, other: StubReplica, keys: dict[str, str]) -> None:
    """What every front end must do; ``post(path, headers)`` sends a predict request."""
    missing = post(f"{SPAM}:predict", {})
    assert (missing.status_code, missing.json()["kind"]) == (401, "unauthenticated"), missing.text
    assert missing.headers["www-authenticate"].startswith("Bearer")
    unknown = post(f"{SPAM}:predict", {"authorization": "Bearer mdyk_000000000000_made-up"})
    assert unknown.status_code == 401
    wrong = post(f"{SPAM}:predict", {"authorization": f"Bearer {keys['ads']}"})
    assert (wrong.status_code, wrong.json()["kind"]) == (403, "forbidden"), wrong.text
    assert mail.requests == []  # nothing refused got through

    good = {"authorization": f"Bearer {keys['mail']}", "x-trace": "t1"}
    for _ in range(2):  # the burst
        answer = post(f"{SPAM}:predict", good)
        assert answer.status_code == 200, answer.text
        assert answer.json()["replica"] == "mail"
    seen = mail.requests[-1][1]
    assert "authorization" not in seen  # the key stops at the gateway
    assert seen["x-trace"] == "t1"  # the other headers go on
    limited = post(f"{SPAM}:predict", good)
    assert (limited.status_code, limited.json()["kind"]) == (429, "rate_limited"), limited.text
    assert limited.headers["retry-after"] == "2"  # 0.5 a second: the next one in 2 s
    assert len(mail.requests) == 2

    passed = post(f"{OPEN}:predict", {"authorization": "Bearer whatever-the-replica-checks"})
    assert passed.status_code == 200, passed.text  # no keys: open, and its headers untouched
    assert other.requests[-1][1]["authorization"] == "Bearer whatever-the-replica-checks"


def test_the_http1_gateway_checks_keys(env: GatewayWorld, client: httpx.Client) -> None:
    mail, other, keys = keyed_world(env)
    gateway = env.gateway(workers=1)
    gateway.refresh()

    def post(path: str, headers: dict[str, str]) -> httpx.Response:
        return predict(client, gateway.url + path, headers=headers)

    check_keys(post, mail, other, keys)
    metadata = client.get(gateway.url + SPAM)  # every model path of a keyed project needs its key
    assert metadata.status_code == 401

    env.store.revoke_key(env.store.list_keys("mail")[0].id)
    gateway.refresh()
    assert post(f"{SPAM}:predict", {"authorization": f"Bearer {keys['mail']}"}).status_code == 401
    assert post(f"{SPAM}:predict", {}).status_code == 401  # its last key revoked: still closed
    env.store.forget_keys("mail")
    gateway.refresh()  # only forgetting its keys opens the project again
    assert post(f"{SPAM}:predict", {}).status_code == 200


def test_the_asgi_gateway_checks_keys(env: GatewayWorld) -> None:
    mail, other, keys = keyed_world(env)
    settings = GatewaySettings(control=env.control, workers=1, log_sink="none", refresh_interval_s=0.05)
    with TestClient(build_gateway_app(settings, env.store)) as client:  # lifespan: the table loads

        def post(path: str, headers: dict[str, str]) -> httpx.Response:
            body = b'{"instances": [[1.0]]}'
            return client.post(path, content=body, headers={"content-type": "application/json", **headers})

        check_keys(post, mail, other, keys)


def test_keys_without_a_rate_have_no_limit(env: GatewayWorld, client: httpx.Client) -> None:
    replica = env.replica("mail")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [replica.url])
    _, key = env.store.create_key("mail", "batch")
    gateway = env.gateway(workers=1)
    gateway.refresh()
    headers = {"authorization": f"Bearer {key}"}
    answers = [predict(client, f"{gateway.url}{SPAM}:predict", headers=headers) for _ in range(30)]
    assert [answer.status_code for answer in answers] == [200] * 30


def test_the_python_client_sends_its_key_and_reads_each_refusal(
    env: GatewayWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, keys = keyed_world(env)
    gateway = env.gateway(workers=1)
    gateway.refresh()
    monkeypatch.delenv("MODELYARD_API_KEY", raising=False)
    monkeypatch.setenv("MODELYARD_TOKEN", "mdy_000000000000_operator-token")  # never sent to inference
    with modelyard.Client(gateway.url, retries=0) as anonymous, pytest.raises(AuthenticationError):
        anonymous.metadata("mail/spam")
    with (
        modelyard.Client(gateway.url, retries=0, api_key=keys["ads"]) as other,
        pytest.raises(PermissionDeniedError),
    ):
        other.metadata("mail/spam")
    monkeypatch.setenv("MODELYARD_API_KEY", keys["mail"])  # read when no api_key= is given
    with modelyard.Client(gateway.url, retries=0) as client:
        assert client.metadata("mail/spam")["replica"] == "mail"
        client.metadata("mail/spam")  # the burst of 2 is spent
        with pytest.raises(RateLimitedError) as caught:
            client.metadata("mail/spam")
        assert caught.value.status == 429
