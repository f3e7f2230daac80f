"""Garbage collection: unreferenced, old enough uploads go; referenced or recent bytes stay."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import ControlSettings, ListedArtifact, Registry, RegistryClient
from modelyard.registry.store import ArtifactStore, FsspecArtifactStore
from tests.support import serve_in_thread

HOUR = timedelta(hours=1)


def age(registry: Registry, digest: str, seconds: float = 7200) -> None:
    """Make a stored blob look ``seconds`` old (a local store: set the file's mtime)."""
    assert isinstance(registry.store, FsspecArtifactStore)
    path = Path(registry.store.path(digest))
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_store_lists_blobs_with_size_and_age(tmp_path: Path) -> None:
    for url in (str(tmp_path / "local"), f"memory://modelyard-gc-{uuid.uuid4().hex}"):
        store = FsspecArtifactStore(url)
        assert isinstance(store, ArtifactStore)
        assert list(store.list()) == []
        stored = [store.put([b"one"]), store.put([b"second"])]
        listed = list(store.list())
        assert all(isinstance(blob, ListedArtifact) for blob in listed)
        assert sorted((b.sha256, b.size, b.uri) for b in listed) == sorted(
            (s.sha256, s.size, s.uri) for s in stored
        )
        assert all(abs(time.time() - b.modified_at.timestamp()) < 60 for b in listed)


def test_reuploading_bytes_refreshes_their_age(tmp_path: Path) -> None:
    store = FsspecArtifactStore(str(tmp_path / "store"))
    digest = store.put([b"again"]).sha256
    path = store.path(digest)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    store.put([b"again"])  # a client about to register these bytes: they count as new again
    assert abs(time.time() - os.path.getmtime(path)) < 60


def test_an_old_unregistered_upload_is_collected(registry: Registry) -> None:
    digest = registry.upload([b"never registered"]).sha256
    age(registry, digest)
    removed = registry.collect_garbage(older_than=HOUR)
    assert [(a.sha256, a.size) for a in removed] == [(digest, len(b"never registered"))]
    assert registry.store.stat(digest) is None


def test_a_young_unregistered_upload_is_kept(registry: Registry) -> None:
    digest = registry.upload([b"registration on its way"]).sha256
    assert registry.collect_garbage(older_than=HOUR) == []
    assert registry.store.stat(digest) is not None


def test_referenced_bytes_are_never_collected(registry: Registry) -> None:
    version = registry.register("iris", registry.upload([b"weights"]).sha256)
    age(registry, version.sha256)
    assert registry.collect_garbage(older_than=timedelta(0)) == []
    assert registry.fetch("iris", registry.settings.home / "dl").read_bytes() == b"weights"


def test_dry_run_deletes_nothing(registry: Registry) -> None:
    digest = registry.upload([b"orphan"]).sha256
    age(registry, digest)
    assert [a.sha256 for a in registry.collect_garbage(older_than=HOUR, dry_run=True)] == [digest]
    assert registry.store.stat(digest) is not None
    assert [a.sha256 for a in registry.collect_garbage(older_than=HOUR)] == [digest]
    assert registry.store.stat(digest) is None


def test_a_negative_threshold_is_invalid(registry: Registry) -> None:
    with pytest.raises(InvalidInput):
        registry.collect_garbage(older_than=timedelta(seconds=-1))


def test_gc_on_a_memory_store(settings: ControlSettings) -> None:
    url = f"memory://modelyard-gc-{uuid.uuid4().hex}"
    with Registry(settings.model_copy(update={"artifact_url": url})) as registry:
        kept = registry.register("iris", registry.upload([b"kept"]).sha256)
        orphan = registry.upload([b"orphan"]).sha256
        assert [a.sha256 for a in registry.collect_garbage(older_than=timedelta(0))] == [orphan]
        assert registry.store.stat(orphan) is None
        assert registry.store.stat(kept.sha256) is not None


class _RegisteredMeanwhile:
    """A store whose listing is followed by a registration of the listed bytes (the race)."""

    def __init__(self, registry: Registry) -> None:
        self._registry, self._inner = registry, registry.store

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def list(self) -> Iterator[ListedArtifact]:
        blobs = list(self._inner.list())
        yield from blobs
        for blob in blobs:
            self._registry.register("racer", blob.sha256)


def test_a_registration_racing_gc_keeps_its_bytes(registry: Registry) -> None:
    digest = registry.upload([b"just in time"]).sha256
    registry.store = _RegisteredMeanwhile(registry)  # type: ignore[assignment]
    assert registry.collect_garbage(older_than=timedelta(0)) == []
    assert registry.get_version("racer", 1).sha256 == digest
    assert registry.store.stat(digest) is not None


def test_registrations_racing_gc_with_threads_never_point_at_nothing(settings: ControlSettings) -> None:
    with Registry(settings) as registering, Registry(settings) as collecting:
        digests = [registering.upload([f"race {i}".encode()]).sha256 for i in range(8)]
        barrier = threading.Barrier(2)
        outcome: dict[str, bool] = {}

        def register_all() -> None:
            barrier.wait()
            for digest in digests:
                try:
                    registering.register("racer", digest)
                    outcome[digest] = True
                except NotFound:  # collected first: a clean failure, nothing registered
                    outcome[digest] = False

        worker = threading.Thread(target=register_all)
        worker.start()
        barrier.wait()
        removed = {a.sha256 for a in collecting.collect_garbage(older_than=timedelta(0))}
        worker.join()
        registered: set[str] = set()
        if any(outcome.values()):
            registered = {v.sha256 for v in registering.list_versions("racer", page_size=100).items}
        for digest in digests:
            stored = registering.store.stat(digest) is not None
            assert outcome[digest] == (digest in registered)
            # registered: its bytes are there and were not collected; refused: collected, gone
            assert stored == outcome[digest]
            assert (digest in removed) != outcome[digest]


def test_gc_over_rest_and_the_client(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    with (
        Registry(settings) as registry,
        TestClient(build_control_app(settings, registry), base_url="http://127.0.0.1") as client,
    ):
        digest = client.post("/api/v1/artifacts", content=b"rest orphan").json()["sha256"]
        assert client.post("/api/v1/gc").json() == []  # default: one hour
        response = client.post("/api/v1/gc", params={"older_than_s": 0, "dry_run": "true"})
        assert response.status_code == 200, response.text
        assert [a["sha256"] for a in response.json()] == [digest]
        assert registry.store.stat(digest) is not None
        assert client.post("/api/v1/gc", params={"older_than_s": -1}).status_code == 400
        assert client.post("/api/v1/gc", params={"older_than_s": "soon"}).status_code == 400
        assert client.post("/api/v1/gc", params={"older_than_s": 10**17}).status_code == 400
        assert registry.collect_garbage(timedelta.max) == []  # no overflow
        assert "post" in client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/gc"]
        with (
            serve_in_thread(build_control_app(settings, registry)) as address,
            RegistryClient(f"http://{address}") as remote,
        ):
            assert remote.collect_garbage() == []
            assert [a.sha256 for a in remote.collect_garbage(timedelta(0))] == [digest]
        assert registry.store.stat(digest) is None


def test_the_cli_prints_what_it_removed(tmp_path: Path) -> None:
    env = {
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_CONTROL_URL": "",
        "MODELYARD_REGISTRY_URL": "",
        "COLUMNS": "200",
    }
    with Registry(ControlSettings(home=tmp_path / "home")) as registry:
        digest = registry.upload([b"cli orphan"]).sha256
        age(registry, digest)

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, ["registry", "gc", *args], env=env)
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    out = run("--dry-run")
    assert f"would delete {digest} (10 bytes)" in out
    assert "would delete 1 unreferenced artifact(s), 10 bytes" in out
    listed = json.loads(run("--dry-run", "--json"))
    assert [(a["sha256"], a["size"]) for a in listed] == [(digest, 10)]
    out = run("--older-than", "3600")
    assert f"deleted {digest} (10 bytes)" in out
    assert "deleted 1 unreferenced artifact(s), 10 bytes" in out
    assert json.loads(run("--json", "--older-than", "0")) == []
