"""The routing table's REST API, in-process on the control-plane app (Starlette's TestClient)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings
from modelyard.routing.rest import MAX_JSON_BODY
from modelyard.routing.store import RouteStore

API = "/api/v1/routes"
SPAM = f"{API}/mail/spam"
A, B = "http://127.0.0.1:9001", "http://127.0.0.1:9002"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(
        build_control_app(ControlSettings(home=tmp_path / "home")), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error(response: Any, status: int, kind: str, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["kind"], body.get("field")) == (kind, field), body
    return str(body["error"])


def revision(client: TestClient) -> int:
    return int(ok(client.get(f"{API}/_revision"))["revision"])


def test_a_route_from_start_to_finish(client: TestClient) -> None:
    assert ok(client.get(API)) == []
    assert revision(client) == 0
    route = ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 90, "v2": 10}}))
    assert route == {
        "project": "mail",
        "model": "spam",
        "timeout_s": 30.0,
        "log_payload": "hash",
        "log_sample": 1.0,
        "versions": [
            {
                "version": "v1",
                "weight": 90,
                "mirror": False,
                "mirror_fraction": 1.0,
                "target": "",
                "replicas": [],
            },
            {
                "version": "v2",
                "weight": 10,
                "mirror": False,
                "mirror_fraction": 1.0,
                "target": "",
                "replicas": [],
            },
        ],
    }
    ok(client.put(f"{SPAM}/versions/v1/replicas", json={"urls": [B]}))
    route = ok(client.post(f"{SPAM}/versions/v1/replicas", json={"url": A}))
    assert route["versions"][0]["replicas"] == [A, B]
    route = ok(client.delete(f"{SPAM}/versions/v1/replicas", params={"url": B}))
    assert route["versions"][0]["replicas"] == [A]
    route = ok(client.put(f"{SPAM}/versions/v3/mirror", json={"fraction": 0.25}))
    assert route["versions"][2] | {"replicas": []} == {
        "version": "v3", "weight": 0, "mirror": True, "mirror_fraction": 0.25, "target": "", "replicas": [],
    }  # fmt: skip
    assert ok(client.delete(f"{SPAM}/versions/v3/mirror"))["versions"][2]["mirror"] is False
    route = ok(client.put(f"{SPAM}/weights", json={"weights": {"v3": 5}, "replace": False}))
    assert [v["weight"] for v in route["versions"]] == [90, 10, 5]
    route = ok(client.patch(SPAM, json={"timeout_s": 2, "log_payload": "none", "target": {"v1": "spam2"}}))
    assert (route["timeout_s"], route["log_payload"], route["versions"][0]["target"]) == (
        2.0,
        "none",
        "spam2",
    )
    assert [v["version"] for v in ok(client.delete(f"{SPAM}/versions/v3"))["versions"]] == ["v1", "v2"]
    assert ok(client.get(SPAM)) == ok(client.get(API))[0]
    assert revision(client) == 9  # one per write
    ok(client.delete(SPAM), 204)
    assert ok(client.get(API)) == []
    assert revision(client) == 10


def test_invalid_bodies_are_400s_naming_the_field(client: TestClient) -> None:
    ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 1}}))
    cases: list[tuple[str, str, Any, str]] = [
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": "90"}}, "weights.v1"),
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": 1.5}}, "weights.v1"),
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": -1}}, "weights.v1"),
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": 0}}, "weights"),
        ("PUT", f"{SPAM}/weights", {"weight": {"v1": 1}}, "weights"),  # missing
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": 1}, "replace": "yes"}, "replace"),
        ("PUT", f"{SPAM}/weights", {"weights": {"v1": 1}, "extra": 1}, "extra"),
        ("PUT", f"{SPAM}/versions/v1/mirror", {"fraction": 2}, "fraction"),
        ("PUT", f"{SPAM}/versions/v1/mirror", {"fraction": "half"}, "fraction"),
        ("PUT", f"{SPAM}/versions/v1/replicas", {"urls": [A, 5]}, "urls.1"),
        ("PUT", f"{SPAM}/versions/v1/replicas", {"urls": [A, "ftp://x:1"]}, "urls.1"),
        ("POST", f"{SPAM}/versions/v1/replicas", {"url": "localhost:80"}, "url"),
        ("PATCH", SPAM, {"log_payload": "all"}, "log_payload"),
        ("PATCH", SPAM, {"log_sample": -0.5}, "log_sample"),
        ("PATCH", SPAM, {"timeout_s": 0}, "timeout_s"),
        ("PATCH", SPAM, {"target": {"v1": 3}}, "target.v1"),
        ("PUT", f"{API}/mail/spam!/weights", {"weights": {"v1": 1}}, "model"),
        ("PUT", f"{API}/Mail%20x/spam/weights", {"weights": {"v1": 1}}, "project"),
        ("PUT", f"{SPAM}/versions/-v/mirror", {}, "version"),
    ]
    for method, path, body, field in cases:
        error(client.request(method, path, json=body), 400, "invalid_input", field)
    error(client.put(f"{SPAM}/weights", content=b"{not json"), 400, "invalid_input", "body")
    error(client.delete(f"{SPAM}/versions/v1/replicas"), 400, "invalid_input", "url")
    assert revision(client) == 1


def test_bodies_over_the_limit_are_413s(client: TestClient) -> None:
    big = {"urls": [A] * (MAX_JSON_BODY // len(A) + 1)}
    error(client.put(f"{SPAM}/versions/v1/replicas", json=big), 413, "too_large", "body")
    bomb = gzip.compress(b" " * (MAX_JSON_BODY + 1))
    response = client.put(f"{SPAM}/weights", content=bomb, headers={"content-encoding": "gzip"})
    error(response, 413, "too_large", "body")


def test_not_found_and_conflict(client: TestClient) -> None:
    assert "mail/spam" in error(client.get(SPAM), 404, "not_found", "model")
    error(client.delete(SPAM), 404, "not_found", "model")
    error(client.patch(SPAM, json={"timeout_s": 1}), 404, "not_found", "model")
    error(client.put(f"{SPAM}/versions/v1/mirror", json={}), 404, "not_found", "model")
    ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 1}}))
    assert "v9" in error(client.delete(f"{SPAM}/versions/v9"), 404, "not_found", "version")
    error(client.delete(f"{SPAM}/versions/v9/mirror"), 404, "not_found", "version")
    error(client.delete(f"{SPAM}/versions/v1/replicas", params={"url": A}), 404, "not_found", "url")
    ok(client.post(f"{SPAM}/versions/v1/replicas", json={"url": A}))
    error(client.post(f"{SPAM}/versions/v1/replicas", json={"url": A}), 409, "conflict", "url")


def test_the_control_plane_serves_the_registry_too_on_one_database(client: TestClient) -> None:
    assert ok(client.get("/api/v1/health")) == {"status": "ok"}
    assert ok(client.get("/api/v1/models"))["items"] == []
    ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 1}}))
    registry = client.app.state.registry  # type: ignore[attr-defined]
    assert RouteStore(registry.engine).get("mail", "spam").versions[0].weight == 1
    assert client.post(API).status_code == 405
    assert client.get(f"{API}/mail").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254:80",  # AWS, Azure, GCP, OpenStack: link-local
        "http://2852039166:80",  # the same address in the spellings the resolver accepts
        "http://0xa9fea9fe:80",
        "http://169.254.43518:80",
        "http://[fe80::1]:80",
        "http://[::ffff:169.254.169.254]:80",
        "http://metadata.google.internal:80",
        "http://METADATA:80",
        "http://metadata.google.internal.:80",
        "http://[fd00:ec2::254]:80",  # AWS over IPv6
    ],
)
def test_a_replica_url_cannot_name_a_metadata_service(client: TestClient, url: str) -> None:
    ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 1}}))
    before = revision(client)
    error(client.post(f"{SPAM}/versions/v1/replicas", json={"url": url}), 400, "invalid_input", "url")
    error(client.put(f"{SPAM}/versions/v1/replicas", json={"urls": [A, url]}), 400, "invalid_input", "urls.1")
    heartbeat = {"url": url, "ready": True, "ttl_s": 10}
    error(client.put(f"{SPAM}/versions/v1/endpoints", json=heartbeat), 400, "invalid_input", "url")
    assert revision(client) == before
    assert ok(client.get(SPAM))["versions"][0]["replicas"] == []


def test_loopback_and_private_replicas_are_still_fine(client: TestClient) -> None:
    urls = ["http://127.0.0.1:9001", "http://localhost:9002", "http://[::1]:9003", "http://10.0.0.5:8080"]
    ok(client.put(f"{SPAM}/weights", json={"weights": {"v1": 1}}))
    route = ok(client.put(f"{SPAM}/versions/v1/replicas", json={"urls": urls}))
    assert sorted(route["versions"][0]["replicas"]) == sorted(urls)


@pytest.mark.parametrize("name", ["mail%0A", "mail%0D%0A"])
def test_a_name_with_a_trailing_newline_is_refused(client: TestClient, name: str) -> None:
    path = f"{API}/{name}/spam/weights"
    error(client.put(path, json={"weights": {"v1": 1}}), 400, "invalid_input", "project")
    error(client.put(f"{SPAM}/weights", json={"weights": {"v1\n": 1}}), 400, "invalid_input", "weights")
