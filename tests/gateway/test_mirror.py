"""Mirroring and inference logs through the real gateway front end (stub replicas, SQLite routes)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from tests.gateway.support import GatewayWorld, predict, wait_for

PREDICT = "/projects/mail/models/spam:predict"


def routed(env: GatewayWorld, fraction: float = 1.0) -> tuple[Any, Any]:
    """mail/spam: v1 takes all traffic, v2 mirrors ``fraction`` of it."""
    primary, shadow = env.replica("v1"), env.replica("v2")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [primary.url])
    env.store.set_replicas("mail", "spam", "v2", [shadow.url])
    env.store.set_mirror("mail", "spam", "v2", fraction)
    return primary, shadow


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus exposition text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def log_records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_mirror_gets_a_copy_and_the_caller_only_the_primary_answer(
    env: GatewayWorld, client: httpx.Client
) -> None:
    primary, shadow = routed(env)
    gateway = env.gateway()
    for i in range(5):
        response = predict(
            client, gateway.url + PREDICT, b'{"instances": [[%d]]}' % i, {"x-request-id": f"r{i}"}
        )
        assert response.json()["replica"] == "v1"
        assert response.headers["x-modelyard-route-version"] == "v1"
    assert wait_for(lambda: len(shadow.requests) == 5)
    for i, (path, headers, body) in enumerate(sorted(shadow.requests, key=lambda r: r[1]["x-request-id"])):
        assert path == "/v1/models/spam:predict"
        assert headers["x-modelyard-mirror"] == "1"
        assert headers["x-request-id"] == f"r{i}"
        assert body == b'{"instances": [[%d]]}' % i
    assert "x-modelyard-mirror" not in primary.requests[0][1]


def test_mirror_fraction_is_exact_and_pinned_requests_are_mirrored_too(
    env: GatewayWorld, client: httpx.Client
) -> None:
    _, shadow = routed(env, fraction=0.25)
    gateway = env.gateway()
    for _ in range(50):
        predict(client, gateway.url + PREDICT)
    for _ in range(50):
        predict(client, gateway.url + "/projects/mail/models/spam/versions/v1:predict")
    assert wait_for(lambda: len(shadow.requests) == 25)
    time.sleep(0.2)
    assert len(shadow.requests) == 25


def test_a_slow_or_dead_mirror_never_delays_or_fails_the_caller(
    env: GatewayWorld, client: httpx.Client
) -> None:
    _, shadow = routed(env)
    shadow.delay_s = 1.0
    gateway = env.gateway()
    started = time.monotonic()
    for _ in range(5):
        assert predict(client, gateway.url + PREDICT).status_code == 200
    assert time.monotonic() - started < 0.8  # five answers while each copy takes a second
    shadow.kill()
    for _ in range(5):
        assert predict(client, gateway.url + PREDICT).status_code == 200
    text = ""

    def failed_counted() -> bool:
        nonlocal text
        text = client.get(gateway.admin_url + "/metrics").text
        return metric(text, "modelyard_gateway_mirror_requests_total", outcome="failed", version="v2") >= 5

    assert wait_for(failed_counted, timeout=8), text


def test_a_full_mirror_queue_drops_copies_and_counts_them(env: GatewayWorld, client: httpx.Client) -> None:
    _, shadow = routed(env)
    shadow.delay_s = 0.5
    gateway = env.gateway(mirror_queue=2, mirror_concurrency=1)
    for _ in range(20):
        assert predict(client, gateway.url + PREDICT).status_code == 200
    text = client.get(gateway.admin_url + "/metrics").text
    dropped = metric(text, "modelyard_gateway_mirror_requests_total", outcome="dropped", version="v2")
    assert 15 <= dropped <= 17  # one in flight, two queued, the rest dropped
    assert len(shadow.requests) <= 3


def test_primary_and_mirror_answers_are_logged_side_by_side(env: GatewayWorld, client: httpx.Client) -> None:
    routed(env)
    gateway = env.gateway()
    predict(client, gateway.url + PREDICT, headers={"x-request-id": "side-by-side"})
    assert wait_for(lambda: len(log_records(env.log_path)) == 2, timeout=5)
    records = {r["role"]: r for r in log_records(env.log_path)}
    primary, mirror = records["primary"], records["mirror"]
    for record in (primary, mirror):
        assert record["request_id"] == "side-by-side"
        assert (record["project"], record["model"], record["protocol"], record["status"]) == (
            "mail",
            "spam",
            "tfserving",
            200,
        )
        assert record["request_bytes"] == len(b'{"instances": [[1.0]]}')
        assert record["request_body"] is None  # the default payload mode keeps hashes, not bodies
        assert record["latency_ms"] > 0
    assert (primary["version"], mirror["version"]) == ("v1", "v2")
    assert primary["replica"] != mirror["replica"]
    assert primary["request_hash"] == mirror["request_hash"]
    assert primary["response_hash"] != mirror["response_hash"]  # the stubs answer with their names


def test_log_payload_modes_and_sampling_are_per_route(env: GatewayWorld, client: httpx.Client) -> None:
    primary = env.replica("v1")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [primary.url])
    env.store.set_options("mail", "spam", log_payload="full")
    env.store.set_weights("mail", "ham", {"v1": 1})
    env.store.set_replicas("mail", "ham", "v1", [primary.url])
    env.store.set_options("mail", "ham", log_sample=0.0)
    gateway = env.gateway()
    predict(client, gateway.url + "/projects/mail/models/ham:predict")
    response = predict(client, gateway.url + PREDICT, b'{"instances": [[7]]}')
    assert wait_for(lambda: len(log_records(env.log_path)) >= 1)
    time.sleep(0.2)
    records = log_records(env.log_path)
    assert [r["model"] for r in records] == ["spam"]  # ham samples 0% of its requests
    assert records[0]["request_body"] == '{"instances": [[7]]}'
    assert orjson.loads(records[0]["response_body"]) == response.json()


def test_unknown_route_requests_are_counted_but_not_labelled_with_their_names(
    env: GatewayWorld, client: httpx.Client
) -> None:
    routed(env)
    gateway = env.gateway()
    predict(client, gateway.url + "/projects/x/models/y:predict")
    predict(client, gateway.url + PREDICT)
    text = client.get(gateway.admin_url + "/metrics").text
    assert metric(text, "modelyard_gateway_requests_total", code="404", project="") == 1
    assert metric(text, "modelyard_gateway_requests_total", code="200", project="mail", version="v1") == 1
    assert 'project="x"' not in text  # callers cannot blow up the label cardinality
    assert metric(text, "modelyard_gateway_request_duration_seconds_count", version="v1") == 1
    assert metric(text, "modelyard_gateway_replica_requests_total", version="v1", code="200") == 1


def _redis_or_skip() -> redis.Redis:
    connection = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        connection.close()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required with CI=true: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return connection


def test_logs_reach_a_real_redis_stream_through_the_gateway(env: GatewayWorld, client: httpx.Client) -> None:
    connection = _redis_or_skip()
    stream = f"modelyard-test-{uuid.uuid4().hex}"
    try:
        routed(env)
        gateway = env.gateway(log_sink=f"redis://127.0.0.1:6379/0?stream={stream}")
        predict(client, gateway.url + PREDICT, headers={"x-request-id": "to-redis"})
        assert wait_for(lambda: connection.xlen(stream) == 2, timeout=5)
        records = [orjson.loads(fields[b"record"]) for _, fields in connection.xrange(stream)]
        assert {(r["request_id"], r["role"]) for r in records} == {
            ("to-redis", "primary"),
            ("to-redis", "mirror"),
        }
    finally:
        connection.delete(stream)
        connection.close()
