"""Hostile packages pushed to the registry (the real package verification, no stand-in): a gzip bomb
is refused at its member's header, and escapes, links, devices, duplicate and unlisted members are
refused, each naming the member, leaving no version and (for a push) no bytes behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.control.app import build_control_app
from modelyard.errors import PackageInvalid
from modelyard.registry import ControlSettings, Registry
from tests.package.hostile import BOMB_MEMBER, HOSTILE, bomb, hostile, real_package
from tests.registry.conftest import artifact_files

API = "/api/v1"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_package(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def gzip_bomb(real: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bomb(real, tmp_path_factory.mktemp("bomb") / "bomb.modelyard")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ControlSettings(home=tmp_path / "home")
    with TestClient(build_control_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def register_bytes(client: TestClient, data: bytes) -> tuple[int, dict[str, str]]:
    """Upload ``data`` and register it as a package; the registration's status and body."""
    headers = {"content-type": "application/octet-stream"}
    uploaded = client.post(f"{API}/artifacts", content=data, headers=headers)
    assert uploaded.status_code == 201, uploaded.text
    fields = {"sha256": uploaded.json()["sha256"], "filename": "pushed.modelyard"}
    response = client.post(f"{API}/models/pushed/versions", json=fields)
    body: dict[str, str] = response.json()
    return response.status_code, body


def test_pushing_a_gzip_bomb_is_refused_before_it_is_inflated(
    sqlite_registry: Registry, gzip_bomb: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(PackageInvalid, match="refused before inflating") as caught:
        sqlite_registry.push(gzip_bomb, "bomb")
    assert time.monotonic() - started < 1.0
    assert caught.value.field == BOMB_MEMBER
    assert artifact_files(Path(sqlite_registry.settings.resolved_artifact_url())) == []
    assert sqlite_registry.list_models().items == []


def test_registering_an_uploaded_gzip_bomb_is_400_naming_the_member(
    client: TestClient, gzip_bomb: Path
) -> None:
    started = time.monotonic()
    status, body = register_bytes(client, gzip_bomb.read_bytes())
    assert time.monotonic() - started < 2.0
    assert (status, body["kind"], body["field"]) == (400, "invalid_input", BOMB_MEMBER), body
    assert "refused before inflating" in body["error"]
    assert client.get(f"{API}/models").json()["items"] == []


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_packages_are_refused_by_push_and_by_registration(
    sqlite_registry: Registry, client: TestClient, real: Path, tmp_path: Path, kind: str
) -> None:
    crafted = hostile(real, tmp_path / "hostile.modelyard", kind)
    message = HOSTILE[kind][3]
    with pytest.raises(PackageInvalid, match=message):
        sqlite_registry.push(crafted, "hostile")
    assert artifact_files(Path(sqlite_registry.settings.resolved_artifact_url())) == []
    status, body = register_bytes(client, crafted.read_bytes())
    assert (status, body["kind"]) == (400, "invalid_input"), body
    assert message.strip("'") in body["error"]
    assert client.get(f"{API}/models").json()["items"] == []
