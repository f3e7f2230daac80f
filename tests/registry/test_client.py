"""RegistryClient against a real registry server (uvicorn on port 0 in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.control.app import build_control_app
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import ControlSettings, NewVersion, Registry, RegistryClient, fetch_model
from tests.support import serve_in_thread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Registry]]:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        yield f"http://{address}", registry


def test_the_client_does_what_the_core_does(server: tuple[str, Registry], tmp_path: Path) -> None:
    url, registry = server
    model = tmp_path / "fraud.onnx"
    model.write_bytes(b"fraud model" * 500)
    with RegistryClient(url) as client:
        pushed = client.push(model, spec=NewVersion(metrics={"auc": 0.97}, user="ana"), aliases=["staging"])
        assert (pushed.name, pushed.version, pushed.filename, pushed.aliases) == (
            "fraud",
            1,
            "fraud.onnx",
            ["staging"],
        )
        assert registry.get_version("fraud", 1) == pushed  # the server's core saw the same thing
        client.push(model, name="fraud")
        assert [v.version for v in client.list_versions("fraud").items] == [2, 1]
        assert client.get_model("fraud").latest_version == 2
        moved = client.set_alias("fraud", "production", 2, user="bob", expected_revision=0)
        with pytest.raises(Conflict):
            client.set_alias("fraud", "production", 1, expected_revision=0)
        assert client.resolve("fraud@production").version == moved.version == 2
        assert [e.to_version for e in client.alias_history("fraud").items] == [2, 1]
        client.mark_used("fraud", 2, "deployment/prod-eu")
        assert [u.consumer for u in client.list_usages("fraud", 2)] == ["deployment/prod-eu"]
        with pytest.raises(Conflict, match="deployment/prod-eu"):
            client.delete_version("fraud", 2)
        client.unmark_used("fraud", 2, "deployment/prod-eu")
        client.delete_version("fraud", 2)
        with pytest.raises(NotFound):
            client.resolve("fraud/2")
        with pytest.raises(InvalidInput):
            client.resolve("fraud@Bad")


def test_fetch_model_downloads_once_then_reuses_the_verified_copy(
    server: tuple[str, Registry], tmp_path: Path
) -> None:
    url, registry = server
    data = b"\x00\x01" * 50_000
    registry.register("iris", registry.upload([data]).sha256, NewVersion(filename="iris.onnx"))
    registry.set_alias("iris", "production", 1)
    settings = ControlSettings(home=tmp_path / "client")
    path = fetch_model("iris@production", settings=settings, registry_url=url)
    assert path.read_bytes() == data
    assert path.parent == settings.resolved_cache_dir() / registry.resolve("iris").sha256
    stamp = path.stat().st_mtime_ns
    assert fetch_model("iris@production", settings=settings, registry_url=url).stat().st_mtime_ns == stamp
    local = fetch_model("iris/1", settings=registry.settings, dest_dir=tmp_path / "local")  # no server
    assert local.read_bytes() == data


def test_consumers_cannot_escape_their_path_segment(server: tuple[str, Registry]) -> None:
    url, registry = server
    for data in (b"one", b"two"):
        registry.register("m", registry.upload([data]).sha256)
    with RegistryClient(url) as client:
        for consumer in ("../../2", "../2", "a/../../2", "a?b", "a#b"):
            with pytest.raises(InvalidInput):
                client.unmark_used("m", 1, consumer)
            with pytest.raises(InvalidInput):
                client.mark_used("m", 1, consumer)
        assert [v.version for v in client.list_versions("m").items] == [2, 1]  # nothing was deleted
        assert client.mark_used("m", 1, "deployment/prod-eu").consumer == "deployment/prod-eu"
        client.unmark_used("m", 1, "deployment/prod-eu")
        assert client.list_usages("m", 1) == []
    # The server refuses them too, however they are encoded.
    for raw in ("..%2F..%2F2", "a%2F..%2F..%2F2", "a%00b"):
        response = httpx.delete(f"{url}/api/v1/models/m/versions/1/usages/{raw}")
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "consumer"
    assert registry.get_version("m", 2).version == 2


def test_usage_paths_are_quoted() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"consumer": "x", "since": "2026-01-01T00:00:00Z"})

    with RegistryClient("http://registry", transport=httpx.MockTransport(handler)) as client:
        client.mark_used("m", 1, "deployment/prod-eu")
    assert seen == ["/api/v1/models/m/versions/1/usages/deployment%2Fprod-eu"]
