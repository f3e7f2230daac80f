"""A database written by the last release upgrades to the current schema with its data intact.

The fixture (data/release-0004.db and its artifacts) was written by commit 64933de, before the
Alembic revisions moved from ``modelyard/registry/migrations/`` to ``modelyard/control/migrations/``;
tests/control/make_release_db.py regenerates it and lists what it holds. Existing installations only
keep upgrading if every revision id they may have recorded is still in the migrations folder.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import modelyard.access.schema
import modelyard.deploy.schema
import modelyard.rollout.schema
import modelyard.routing.schema  # noqa: F401  (their tables join the metadata compared below)
from modelyard.control.db import MIGRATIONS, create_engine_for, metadata, migrate
from modelyard.control.settings import ControlSettings
from modelyard.deploy.state import DeployStore
from modelyard.registry import NewVersion, Registry
from modelyard.routing import store as route_store
from modelyard.routing.store import RouteStore
from modelyard.routing.table import ModelRoute, VersionRoute

DATA = Path(__file__).with_name("data")
DATABASE = "release-0004.db"
RELEASE_HEAD = "0004"  # what the release recorded: a fact about the fixture, not about the code
V1 = "9dd797e2bd3c4b83f814bc815ddc8ad9b2349ea3cd2658dca2a17eea06bc7a1c"  # sha256 of b"churn model one"
V2 = "09c5696dd578ee825372a3e15d67559004dc5bbda02e0ab63542b200caf491aa"  # sha256 of b"churn model two"


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def _recorded(path: Path) -> list[str]:
    """The revisions in a database's alembic_version table, read without SQLAlchemy or Alembic."""
    conn = sqlite3.connect(path)
    try:
        return sorted(row[0] for row in conn.execute("SELECT version_num FROM alembic_version"))
    finally:
        conn.close()


@pytest.fixture
def release_db(tmp_path: Path) -> ControlSettings:
    """Settings on a copy of the release's database and artifacts (migrating writes to the file)."""
    shutil.copy(DATA / DATABASE, tmp_path / DATABASE)
    shutil.copytree(DATA / "artifacts", tmp_path / "artifacts")
    return ControlSettings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / DATABASE}",
        artifact_url=str(tmp_path / "artifacts"),
    )


def test_the_fixture_was_written_by_the_release() -> None:
    assert _recorded(DATA / DATABASE) == [RELEASE_HEAD]


def test_every_revision_the_release_recorded_is_still_shipped() -> None:
    # A renamed revision id would leave existing databases at a revision Alembic cannot find.
    shipped = {script.revision for script in _scripts().walk_revisions()}
    assert set(_recorded(DATA / DATABASE)) <= shipped


def test_the_release_database_upgrades_to_the_newest_revision(release_db: ControlSettings) -> None:
    newest = _scripts().get_current_head()  # one head, found from the files: a new revision counts too
    assert newest is not None
    engine = create_engine_for(release_db.resolved_database_url())
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() == newest
            assert compare_metadata(context, metadata) == []  # the schema the code queries, exactly
    finally:
        engine.dispose()


def test_the_registry_reads_the_release_models(release_db: ControlSettings) -> None:
    with Registry(release_db) as registry:  # opening migrates to head
        model = registry.get_model("churn")
        versions = registry.list_versions("churn").items
        aliases = {
            alias.alias: (alias.version, alias.revision, alias.updated_by)
            for alias in registry.list_aliases("churn")
        }
        history = registry.alias_history("churn", "production").items
        usages = registry.list_usages("churn", 2)
        fetched = registry.fetch("churn@production", release_db.home / "fetched")
    assert (model.description, model.latest_version, model.aliases) == (
        "predicts who leaves",
        2,
        {"production": 2, "staging": 1},
    )
    assert [(v.version, v.sha256, v.size, v.filename) for v in versions] == [
        (2, V2, 15, "churn-2.bin"),
        (1, V1, 15, "churn-1.bin"),
    ]
    second, first = versions
    assert (first.description, first.user, first.source_run) == ("baseline", "ana", "run-17")
    assert (first.metrics, first.params, first.labels) == ({"auc": 0.81}, {"depth": "4"}, {"team": "growth"})
    assert (second.description, second.user, second.metrics) == ("more trees", "bo", {"auc": 0.84})
    assert (first.aliases, second.aliases) == (["staging"], ["production"])
    assert first.created_at.tzinfo is not None
    assert first.created_at <= second.created_at
    assert aliases == {"production": (2, 2, "bo"), "staging": (1, 1, "ana")}
    assert [(e.from_version, e.to_version, e.user) for e in history] == [(1, 2, "bo"), (None, 1, "ana")]
    assert [usage.consumer for usage in usages] == ["gateway/shop"]
    assert fetched.read_bytes() == b"churn model two"  # the artifact still resolves by its digest


def test_the_routing_table_reads_the_release_route(
    release_db: ControlSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RouteStore.open(release_db) as routes:
        revision = routes.revision()
        [endpoint] = routes.endpoints()
        # The announced replica joins v2 while its heartbeat lasts: read the route at fixed times.
        monkeypatch.setattr(route_store, "_now", lambda: endpoint.heartbeat_at + timedelta(minutes=1))
        announced = routes.get("shop", "churn")
        monkeypatch.setattr(route_store, "_now", lambda: endpoint.expires_at + timedelta(seconds=1))
        expired = routes.get("shop", "churn")
        dropped = routes.expire()
    # set_weights, two add_replica, set_options and one announcing heartbeat: five changes.
    assert revision == 5
    assert (endpoint.project, endpoint.model, endpoint.version) == ("shop", "churn", "v2")
    assert (endpoint.url, endpoint.ready) == ("http://10.0.0.3:8080", True)
    assert endpoint.heartbeat_at.tzinfo is not None
    assert endpoint.expires_at - endpoint.heartbeat_at == timedelta(seconds=3600)
    v1 = VersionRoute("v1", weight=90, replicas=("http://10.0.0.1:8080",))
    v2 = VersionRoute("v2", weight=10, replicas=("http://10.0.0.2:8080",))
    route = ModelRoute(project="shop", model="churn", versions=(v1, v2), timeout_s=12.5, log_payload="full")
    assert expired == route
    v2_announced = dataclasses.replace(v2, replicas=("http://10.0.0.2:8080", "http://10.0.0.3:8080"))
    assert announced == dataclasses.replace(route, versions=(v1, v2_announced))
    assert dropped == 1


def test_the_deploy_history_reads_the_release_apply(release_db: ControlSettings) -> None:
    with DeployStore.open(release_db) as deploys:
        history = deploys.history()
        current = deploys.current()
        running = deploys.running()
    [record] = history
    assert current == record
    assert running is None
    assert (record.id, record.status, record.user, record.source) == (1, "applied", "ana", "deploy.yaml")
    assert (record.file_text, record.message, record.plan) == ("models: []\n", "", {"created": ["churn"]})
    assert record.finished_at is not None
    assert record.created_at.tzinfo == UTC
    assert record.created_at <= record.finished_at


def test_the_upgraded_database_takes_new_writes(release_db: ControlSettings) -> None:
    # Ids and counters carry on from the release's rows rather than colliding with them.
    with Registry(release_db) as registry:
        third = registry.register("churn", registry.upload([b"churn model three"]).sha256, NewVersion())
        moved = registry.set_alias("churn", "production", 3, expected_revision=2)
        with RouteStore(registry.engine) as routes:
            route = routes.set_weights("shop", "churn", {"v3": 1}, replace=False)
            revision = routes.revision()
        with DeployStore(registry.engine) as deploys:
            record = deploys.begin("models: []\n", user="cy", source="cli", plan={})
    assert (third.version, moved.revision) == (3, 3)
    assert [(v.version, v.weight) for v in route.versions] == [("v1", 90), ("v2", 10), ("v3", 1)]
    assert revision == 6
    assert record.id == 2
