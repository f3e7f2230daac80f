"""The REST API in-process (Starlette's TestClient) and, for cut-off uploads, over a real socket."""

from __future__ import annotations

import hashlib
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from modelyard.registry.rest import registry_routes
from tests.registry.conftest import artifact_files
from tests.support import serve_in_thread

API = "/api/v1"


@pytest.fixture
def app_settings(tmp_path: Path) -> ControlSettings:
    return ControlSettings(home=tmp_path / "home", max_upload_bytes=64 * 1024)


@pytest.fixture
def client(app_settings: ControlSettings) -> Iterator[TestClient]:
    with TestClient(build_control_app(app_settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def upload(client: TestClient, data: bytes) -> dict[str, Any]:
    response = client.post(f"{API}/artifacts", content=data)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def register(client: TestClient, name: str, data: bytes, **fields: Any) -> dict[str, Any]:
    stored = upload(client, data)
    response = client.post(f"{API}/models/{name}/versions", json={"sha256": stored["sha256"], **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: httpx.Response, status: int, kind: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["kind"] == kind
    assert body["error"]
    assert body.get("field") == field


def test_register_show_list_resolve_download(client: TestClient) -> None:
    version = register(
        client, "iris", b"weights", filename="iris.onnx", metrics={"acc": 0.9}, aliases=["staging"]
    )
    assert (version["name"], version["version"], version["aliases"]) == ("iris", 1, ["staging"])
    register(client, "iris", b"weights 2")
    assert client.get(f"{API}/models/iris/versions/1").json() == version
    listed = client.get(f"{API}/models/iris/versions", params={"page_size": 1}).json()
    assert [v["version"] for v in listed["items"]] == [2]
    assert listed["next_page_token"]
    rest = client.get(
        f"{API}/models/iris/versions", params={"page_token": listed["next_page_token"], "page_size": 1}
    )
    assert [v["version"] for v in rest.json()["items"]] == [1]
    assert client.get(f"{API}/resolve", params={"ref": "iris@staging"}).json()["version"] == 1
    assert client.get(f"{API}/models", params={"search": "ir"}).json()["items"][0]["latest_version"] == 2
    download = client.get(f"{API}/models/iris/versions/1/artifact")
    assert download.content == b"weights"
    assert download.headers["x-content-sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert 'filename="iris.onnx"' in download.headers["content-disposition"]
    registry = client.app.state.registry  # type: ignore[attr-defined]
    registry.store.delete(version["sha256"])  # bytes lost behind the registry's back: a clean 404
    assert_error(client.get(f"{API}/models/iris/versions/1/artifact"), 404, "not_found", "sha256")


def test_aliases_history_and_conflicts(client: TestClient) -> None:
    register(client, "iris", b"1")
    register(client, "iris", b"2")
    moved = client.put(f"{API}/models/iris/aliases/production", json={"version": 1, "user": "ana"})
    assert moved.json()["revision"] == 1
    stale = client.put(f"{API}/models/iris/aliases/production", json={"version": 2, "expected_revision": 0})
    assert_error(stale, 409, "conflict", "expected_revision")
    client.put(
        f"{API}/models/iris/aliases/production", json={"version": 2, "user": "bob", "expected_revision": 1}
    )
    assert client.get(f"{API}/models/iris/aliases/production").json()["version"] == 2
    assert [a["alias"] for a in client.get(f"{API}/models/iris/aliases").json()] == ["production"]
    deleted = client.delete(f"{API}/models/iris/aliases/production", params={"user": "cy"})
    assert deleted.status_code == 204
    history = client.get(f"{API}/models/iris/history").json()["items"]
    assert [(e["from_version"], e["to_version"], e["user"]) for e in history] == [
        (2, None, "cy"),
        (1, 2, "bob"),
        (None, 1, "ana"),
    ]


def test_usages_block_deletion_until_forced(client: TestClient) -> None:
    register(client, "iris", b"1")
    assert client.put(f"{API}/models/iris/versions/1/usages/deployment/prod-eu").json()["consumer"] == (
        "deployment/prod-eu"
    )
    refused = client.delete(f"{API}/models/iris/versions/1")
    assert_error(refused, 409, "conflict", "version")
    assert "deployment/prod-eu" in refused.json()["error"]
    assert client.delete(f"{API}/models/iris/versions/1", params={"force": "true"}).status_code == 204
    assert_error(client.get(f"{API}/models/iris/versions/1"), 404, "not_found", "version")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "kind", "field"),
    [
        ("GET", "/models/nope", {}, 404, "not_found", "model"),
        ("GET", "/resolve", {"params": {"ref": "bad name"}}, 400, "invalid_input", "name"),
        ("GET", "/models/iris/versions/x", {}, 400, "invalid_input", "version"),
        ("POST", "/models/iris/versions", {"json": {"sha256": "f" * 64}}, 404, "not_found", "sha256"),
        ("POST", "/models/iris/versions", {"json": {"sha256": "xyz"}}, 400, "invalid_input", "sha256"),
        ("POST", "/models", {"content": b"{not json"}, 400, "invalid_input", "body"),
        ("GET", "/models", {"params": {"page_token": "garbage"}}, 400, "invalid_input", "page_token"),
        ("GET", "/nowhere", {}, 404, "not_found", "path"),
        ("PUT", "/models", {}, 405, "method_not_allowed", "method"),
    ],
)
def test_errors_use_the_one_table_and_body(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, kind: str, field: str
) -> None:
    assert_error(client.request(method, f"{API}{path}", **kwargs), status, kind, field)


def test_uploads_over_the_limit_are_refused_and_leave_nothing(
    client: TestClient, app_settings: ControlSettings
) -> None:
    root = Path(app_settings.resolved_artifact_url())
    too_big = b"x" * (64 * 1024 + 1)
    assert_error(client.post(f"{API}/artifacts", content=too_big), 413, "too_large", "body")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(40):
            yield b"y" * 4096

    assert_error(client.post(f"{API}/artifacts", content=chunked()), 413, "too_large", "body")
    wrong = client.post(f"{API}/artifacts", content=b"abc", headers={"x-content-sha256": "0" * 64})
    assert_error(wrong, 400, "invalid_input", "x-content-sha256")
    assert artifact_files(root) == []


def test_a_client_disconnecting_mid_upload_leaves_nothing(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    root = Path(settings.resolved_artifact_url())
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        host, port = address.split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = f"POST {API}/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
            sock.sendall(head.encode() + b"z" * 300_000)
            deadline = time.monotonic() + 10
            while not any(p.parent.name == "tmp" for p in artifact_files(root)):  # the upload is under way
                assert time.monotonic() < deadline, "the upload never started"
                time.sleep(0.01)
        deadline = time.monotonic() + 10
        while artifact_files(root):
            assert time.monotonic() < deadline, f"left behind: {artifact_files(root)}"
            time.sleep(0.02)
        assert registry.list_models().items == []


def _route_keys(routes: list[Any]) -> set[tuple[str, str]]:
    keys = set()
    for route in routes:
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        keys |= {(method, path) for method in (route.methods or ()) if method != "HEAD"}
    return keys


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_covers_every_route(client: TestClient) -> None:
    document = client.get(f"{API}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    # The registry's own routes, and the control plane's health check that its document includes.
    served = _route_keys(registry_routes(client.app.state.registry)) | {("GET", f"{API}/health")}  # type: ignore[attr-defined]
    assert documented == served
    for path, operations in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for operation in operations.values():
            assert operation["summary"]
            assert operation["responses"]
            assert all(re.fullmatch(r"[1-5](\d\d|XX)", status) for status in operation["responses"])
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
    schemas = document["components"]["schemas"]
    for ref in set(_refs(document)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert {"ModelVersion", "Alias", "AliasEvent", "RegisterRequest", "ErrorBody"} <= set(schemas)


# -- review fixes: no 500 for values the database (or Python) refuses, on SQLite and PostgreSQL -----


@pytest.fixture
def backend_client(registry: Registry) -> Iterator[TestClient]:
    """The REST API over the parametrized registry (SQLite and PostgreSQL); 500s come back as 500s."""
    app = build_control_app(registry.settings, registry)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"filename": "a" * 256}, "filename"),
        ({"user": "u" * 201}, "user"),
        ({"source_run": "r" * 501}, "source_run"),
        ({"version": 2**40}, "version"),
        ({"version": 1_000_000_000}, "version"),
        ({"description": "a\x00b"}, "description"),
        ({"labels": {"team": "m\x00l"}}, "labels.team"),
        ({"filename": ""}, "filename"),
        ({"filename": ".."}, "filename"),
        ({"filename": "dir/"}, "filename"),
        ({"filename": "model.py:Model"}, "filename"),
        ({"aliases": ["pr\x00d"]}, "aliases.0"),
    ],
)
def test_refused_registrations_are_400_and_create_nothing(
    backend_client: TestClient, fields: dict[str, Any], field: str
) -> None:
    stored = upload(backend_client, b"weights")
    response = backend_client.post(f"{API}/models/m/versions", json={"sha256": stored["sha256"], **fields})
    assert_error(response, 400, "invalid_input", field)
    assert_error(backend_client.get(f"{API}/models/m"), 404, "not_found", "model")


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_metrics_are_400(backend_client: TestClient, value: bytes) -> None:
    sha = upload(backend_client, b"weights")["sha256"].encode()
    body = b'{"sha256": "%s", "metrics": {"auc": %s}}' % (sha, value)
    response = backend_client.post(f"{API}/models/m/versions", content=body)
    assert_error(response, 400, "invalid_input", "metrics.auc")


def test_other_refused_values_are_400_not_500(backend_client: TestClient) -> None:
    register(backend_client, "m", b"weights")
    c = backend_client
    cases = [
        (c.put(f"{API}/models/m/aliases/prod", json={"version": 2**70}), "version"),
        (c.put(f"{API}/models/m/aliases/prod", json={"version": 1, "user": "u" * 201}), "user"),
        (c.put(f"{API}/models/m/aliases/prod", json={"version": 1, "user": "a\x00"}), "user"),
        (c.post(f"{API}/models", json={"name": "n1", "description": "\x00"}), "description"),
        (c.patch(f"{API}/models/m", json={"description": "\x00"}), "description"),
        (c.get(f"{API}/models/m%00x"), "name"),
        (c.get(f"{API}/models/m%00x/versions"), "name"),
        (c.get(f"{API}/models/m/aliases/p%00"), "alias"),
        (c.get(f"{API}/models?search=a%00"), "search"),
        (c.get(f"{API}/models/m/versions?search=a%00"), "search"),
        (c.get(f"{API}/models/m/history?alias=p%00"), "alias"),
        (c.put(f"{API}/models/m/versions/1/usages/a%00b"), "consumer"),
        (c.put(f"{API}/models/m/versions/1/usages/{'a' * 201}"), "consumer"),
        (c.delete(f"{API}/models/m/versions/1/usages/a%00b"), "consumer"),
        (c.get(f"{API}/models?page_size=--1"), "page_size"),
        (c.get(f"{API}/models?page_size=%C2%B2"), "page_size"),
        (c.get(f"{API}/models?page_size={'9' * 5000}"), "page_size"),
        (c.delete(f"{API}/models/m/aliases/prod?expected_revision=--1"), "expected_revision"),
    ]
    for response, field in cases:
        assert_error(response, 400, "invalid_input", field)
    assert c.get(f"{API}/models/m").json()["aliases"] == {}


def test_page_tokens_with_a_wrong_key_type_are_400(backend_client: TestClient) -> None:
    from modelyard.registry.pages import encode_token

    register(backend_client, "m", b"weights")
    for key in ([1], "abc", 2**40):
        token = encode_token(key, {"list": "versions", "model": "m", "search": ""})
        response = backend_client.get(f"{API}/models/m/versions", params={"page_token": token})
        assert_error(response, 400, "invalid_input", "page_token")
    token = encode_token({"a": 1}, {"list": "models", "search": ""})
    assert_error(
        backend_client.get(f"{API}/models", params={"page_token": token}), 400, "invalid_input", "page_token"
    )


@pytest.mark.parametrize(
    ("filename", "fallback"),
    [("модель.onnx", "______.onnx"), ('a"b.onnx', "a_b.onnx"), ("plain.onnx", "plain.onnx")],
)
def test_downloads_of_any_file_name_carry_a_valid_content_disposition(
    backend_client: TestClient, filename: str, fallback: str
) -> None:
    register(backend_client, "m", b"weights", filename=filename)
    response = backend_client.get(f"{API}/models/m/versions/1/artifact")
    assert response.status_code == 200, response.text
    assert response.content == b"weights"
    disposition = response.headers["content-disposition"]
    assert disposition.isascii()
    assert f'filename="{fallback}"' in disposition
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert urllib.parse.unquote(encoded) == filename


def test_json_bodies_over_the_limit_are_413(backend_client: TestClient) -> None:
    from modelyard.registry.rest import MAX_JSON_BODY

    body = b'{"name": "m", "description": "' + b"x" * MAX_JSON_BODY + b'"}'
    assert_error(backend_client.post(f"{API}/models", content=body), 413, "too_large", "body")
    chunked = backend_client.post(f"{API}/models", content=iter([body[:100], body[100:]]))
    assert_error(chunked, 413, "too_large", "body")
    assert backend_client.get(f"{API}/models").json()["items"] == []
