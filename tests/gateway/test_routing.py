"""The gateway end to end over real sockets: stub replicas, the SQLite routing store, Http1Server."""

from __future__ import annotations

import collections
import threading
import time

import httpx
import orjson
import pytest
import xxhash
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.support import GatewayWorld, predict, wait_for

PREDICT = "/projects/mail/models/spam:predict"


def test_split_90_10_over_2000_requests_is_within_2_percent_and_smooth(
    env: GatewayWorld, client: httpx.Client
) -> None:
    v1, v2 = env.replica("v1-a"), env.replica("v2-a")
    env.store.set_weights("mail", "spam", {"v1": 90, "v2": 10})
    env.store.set_replicas("mail", "spam", "v1", [v1.url])
    env.store.set_replicas("mail", "spam", "v2", [v2.url])
    gateway = env.gateway()
    seen = []
    for _ in range(2000):
        response = predict(client, gateway.url + PREDICT)
        assert response.status_code == 200
        assert response.headers["x-modelyard-route-version"] == response.json()["replica"][:2]
        seen.append(response.headers["x-modelyard-route-version"])
    share = seen.count("v2") / len(seen)
    assert abs(share - 0.10) <= 0.02, share
    longest_v2_run = max(len(run) for run in "".join("b" if v == "v2" else "a" for v in seen).split("a"))
    assert longest_v2_run == 1  # smooth: never two canary requests in a row at 90/10


def test_pinned_version_and_both_protocols_pass_bodies_through(
    env: GatewayWorld, client: httpx.Client
) -> None:
    v1, v2 = env.replica("v1"), env.replica("v2")
    env.store.set_weights("mail", "spam", {"v1": 100})
    env.store.set_replicas("mail", "spam", "v1", [v1.url])
    env.store.set_replicas("mail", "spam", "v2", [v2.url])
    env.store.set_options("mail", "spam", target={"v2": "spam-next"})
    gateway = env.gateway()
    body = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
    pinned = predict(client, gateway.url + "/projects/mail/models/spam/versions/v2/infer", body)
    assert pinned.status_code == 200
    assert pinned.json()["replica"] == "v2"
    assert pinned.json()["path"] == "/v2/models/spam-next/infer"  # the model's name on that replica
    assert pinned.json()["body_hash"] == xxhash.xxh3_64_hexdigest(body)
    tf = predict(client, gateway.url + PREDICT, b'{"instances": [[1, 2]]}')
    assert tf.json()["path"] == "/v1/models/spam:predict"
    assert tf.json()["body_hash"] == xxhash.xxh3_64_hexdigest(b'{"instances": [[1, 2]]}')
    assert v1.requests[-1][1]["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("path", "field", "words"),
    [
        ("/projects/nope/models/spam:predict", "project", "project 'nope'"),
        ("/projects/mail/models/ham:predict", "model", "model 'ham'"),
        ("/projects/mail/models/spam/versions/v9/infer", "version", "version 'v9'"),
    ],
)
def test_unknown_names_are_404s_naming_them(
    env: GatewayWorld, client: httpx.Client, path: str, field: str, words: str
) -> None:
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [env.replica("v1").url])
    gateway = env.gateway()
    response = predict(client, gateway.url + path)
    assert response.status_code == 404
    assert response.json()["field"] == field
    assert words in response.json()["error"]


def test_request_id_is_propagated_or_made(env: GatewayWorld, client: httpx.Client) -> None:
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [env.replica("v1").url])
    gateway = env.gateway()
    given = predict(client, gateway.url + PREDICT, headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["request_id"] == "abc-123"
    made = predict(client, gateway.url + PREDICT)
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]


def test_routing_change_is_live_within_a_second_and_keeps_requests_in_flight(
    env: GatewayWorld, client: httpx.Client
) -> None:
    v1, v2 = env.replica("v1"), env.replica("v2")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [v1.url])
    env.store.set_replicas("mail", "spam", "v2", [v2.url])
    gateway = env.gateway(refresh_interval_s=0.25)
    v1.delay_s = 0.8
    slow: list[httpx.Response] = []
    in_flight = threading.Thread(
        target=lambda: slow.append(predict(httpx.Client(timeout=10), gateway.url + PREDICT))
    )
    in_flight.start()
    assert wait_for(lambda: len(v1.requests) == 1)
    env.store.set_weights("mail", "spam", {"v2": 1})
    changed = time.monotonic()
    assert wait_for(lambda: predict(client, gateway.url + PREDICT).json()["replica"] == "v2", timeout=1.0)
    assert time.monotonic() - changed < 1.0
    in_flight.join(5)
    assert slow[0].status_code == 200
    assert slow[0].json()["replica"] == "v1"


def test_round_robin_over_replicas(env: GatewayWorld, client: httpx.Client) -> None:
    replicas = [env.replica(f"r{i}") for i in range(3)]
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [r.url for r in replicas])
    gateway = env.gateway()
    answered = collections.Counter(
        predict(client, gateway.url + PREDICT).json()["replica"] for _ in range(30)
    )
    assert answered == {"r0": 10, "r1": 10, "r2": 10}


def test_503_and_connection_refused_are_retried_on_another_replica(
    env: GatewayWorld, client: httpx.Client
) -> None:
    busy, dead, good = env.replica("busy"), env.replica("dead"), env.replica("good")
    busy.status = 503
    dead.kill()
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [busy.url, dead.url, good.url])
    gateway = env.gateway(retries=2)
    for _ in range(6):
        response = predict(client, gateway.url + PREDICT)
        assert response.status_code == 200
        assert response.json()["replica"] == "good"
    metrics = client.get(gateway.admin_url + "/metrics").text
    assert (
        'modelyard_gateway_retries_total{model="spam",project="mail",reason="connect",version="v1"}'
        in metrics
    )
    assert 'reason="unavailable"' in metrics
    assert "modelyard_gateway_ejections_total" in metrics


def test_every_replica_down_is_a_502_naming_the_version(env: GatewayWorld, client: httpx.Client) -> None:
    dead = env.replica("dead")
    dead.kill()
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [dead.url])
    gateway = env.gateway()
    response = predict(client, gateway.url + PREDICT)
    assert response.status_code == 502
    assert response.json()["kind"] == "bad_gateway"
    assert "mail/spam version v1" in response.json()["error"]


def test_only_503s_pass_the_last_answer_through(env: GatewayWorld, client: httpx.Client) -> None:
    busy = env.replica("busy")
    busy.status = 503
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [busy.url])
    gateway = env.gateway()
    response = predict(client, gateway.url + PREDICT)
    assert response.status_code == 503
    assert response.json()["replica"] == "busy"


def test_route_timeout_is_a_504(env: GatewayWorld, client: httpx.Client) -> None:
    slow = env.replica("slow")
    slow.delay_s = 2.0
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [slow.url])
    env.store.set_options("mail", "spam", timeout_s=0.3)
    gateway = env.gateway()
    started = time.monotonic()
    response = predict(client, gateway.url + PREDICT)
    assert response.status_code == 504
    assert time.monotonic() - started < 1.5
    assert response.json()["kind"] == "deadline_exceeded"


def test_no_weight_and_no_replicas_are_clear_503_and_502(env: GatewayWorld, client: httpx.Client) -> None:
    env.store.set_weights("mail", "spam", {"v0": 1})
    env.store.set_mirror("mail", "spam", "v1")
    env.store.remove_version("mail", "spam", "v0")  # left: one 0-weight mirror without replicas
    gateway = env.gateway()
    response = predict(client, gateway.url + PREDICT)
    assert response.status_code == 503
    assert "no version has a traffic weight" in response.json()["error"]
    pinned = predict(client, gateway.url + "/projects/mail/models/spam/versions/v1:predict")
    assert pinned.status_code == 502
    assert "tried 0" in pinned.json()["error"]


def test_kill_a_replica_under_load_fails_no_request(env: GatewayWorld) -> None:
    replicas = [env.replica(f"r{i}") for i in range(3)]
    for replica in replicas:
        replica.delay_s = 0.005  # requests are in flight on every replica when one dies
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [r.url for r in replicas])
    gateway = env.gateway(retries=2)
    statuses: collections.Counter[int] = collections.Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as own:
            while not stop.is_set():
                statuses[predict(own, gateway.url + PREDICT).status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    replicas[1].kill()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert statuses[200] > 200
    assert set(statuses) == {200}, statuses
    assert len(replicas[1].requests) > 0  # it did take traffic before it died


def replica_loads(client: httpx.Client, admin_url: str) -> dict[str, float]:
    """``modelyard_gateway_replica_in_flight_requests`` by replica URL, from the admin /metrics."""
    text = client.get(admin_url + "/metrics").text
    return {
        sample.labels["replica"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modelyard_gateway_replica_in_flight_requests"
    }


def test_each_replicas_requests_in_flight_are_exported(env: GatewayWorld, client: httpx.Client) -> None:
    r0, r1 = env.replica("r0"), env.replica("r1")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [r0.url, r1.url])
    gateway = env.gateway()
    assert wait_for(lambda: replica_loads(client, gateway.admin_url) == {r0.url: 0, r1.url: 0})
    r0.delay_s = r1.delay_s = 1.5
    answers: list[httpx.Response] = []
    held = [
        threading.Thread(
            target=lambda: answers.append(predict(httpx.Client(timeout=10), gateway.url + PREDICT))
        )
        for _ in range(3)
    ]
    for thread in held:
        thread.start()
    assert wait_for(lambda: len(r0.requests) + len(r1.requests) == 3)
    # Round robin sent two to one replica and one to the other; the gauge is sampled at each poll.
    assert wait_for(lambda: sorted(replica_loads(client, gateway.admin_url).values()) == [1, 2])
    for thread in held:
        thread.join(10)
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert wait_for(lambda: replica_loads(client, gateway.admin_url) == {r0.url: 0, r1.url: 0})
