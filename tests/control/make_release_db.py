"""Regenerate tests/control/data/: a control-plane database written by the last release.

The release is commit 64933de, the last one before the Alembic revisions moved from
``modelyard/registry/migrations/`` to ``modelyard/control/migrations/``; its newest revision is
0004. This script uses that release's API (``RegistrySettings``, ``modelyard.gateway.store``), so it
must run against that commit's source, not the current one::

    git worktree add /tmp/oldrelease 64933de
    PYTHONPATH=/tmp/oldrelease/src .venv/bin/python tests/control/make_release_db.py
    git worktree remove --force /tmp/oldrelease

It writes ``release-0004.db`` (SQLite, journal mode DELETE so the one file holds everything) and
``artifacts/`` (the two content-addressed blobs the versions point at). tests/control/test_upgrade.py
opens a copy with the current code and checks that what is created below reads back; keep the two
in step if you change either.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().with_name("data")
DATABASE = "release-0004.db"
RELEASE_HEAD = "0004"


def main() -> None:
    try:
        from modelyard.registry import migrations  # noqa: F401  (only the release has it)
    except ImportError:
        sys.exit("run this with PYTHONPATH=<a checkout of commit 64933de>/src (see the docstring)")
    with tempfile.TemporaryDirectory(prefix="modelyard-release-") as folder:
        home = Path(folder)
        populate(home)
        check_head(home / DATABASE)
        compact(home / DATABASE)
        if DATA.exists():
            shutil.rmtree(DATA)
        DATA.mkdir()
        shutil.copy(home / DATABASE, DATA / DATABASE)
        shutil.copytree(home / "artifacts", DATA / "artifacts", ignore=shutil.ignore_patterns("tmp"))
    print(f"wrote {DATA / DATABASE} ({(DATA / DATABASE).stat().st_size} bytes) and {DATA / 'artifacts'}")


def populate(home: Path) -> None:
    """Everything the release stores: a model with versions and aliases, a route, an endpoint, an apply."""
    from modelyard.gateway.store import RouteStore

    from modelyard.deploy.state import DeployStore
    from modelyard.registry import Registry, RegistrySettings, VersionSpec

    settings = RegistrySettings(
        home=home,
        database_url=f"sqlite:///{home / DATABASE}",
        artifact_url=str(home / "artifacts"),
    )
    with Registry(settings) as registry:
        registry.create_model("churn", description="predicts who leaves")
        first = VersionSpec(
            filename="churn-1.bin",
            description="baseline",
            user="ana",
            source_run="run-17",
            metrics={"auc": 0.81},
            params={"depth": "4"},
            labels={"team": "growth"},
        )
        registry.register("churn", registry.upload([b"churn model one"]).sha256, first)
        second = VersionSpec(
            filename="churn-2.bin", description="more trees", user="bo", metrics={"auc": 0.84}
        )
        registry.register("churn", registry.upload([b"churn model two"]).sha256, second)
        registry.set_alias("churn", "production", 1, user="ana")
        registry.set_alias("churn", "production", 2, user="bo")  # a history of two moves
        registry.set_alias("churn", "staging", 1, user="ana")
        registry.mark_used("churn", 2, "gateway/shop")
        with RouteStore(registry.engine) as routes:
            routes.set_weights("shop", "churn", {"v1": 90, "v2": 10})
            routes.add_replica("shop", "churn", "v1", "http://10.0.0.1:8080")
            routes.add_replica("shop", "churn", "v2", "http://10.0.0.2:8080")
            routes.set_options("shop", "churn", timeout_s=12.5, log_payload="full")
            routes.heartbeat("shop", "churn", "v2", "http://10.0.0.3:8080", ttl_s=3600.0)
        with DeployStore(registry.engine) as deploys:
            record = deploys.begin(
                "models: []\n", user="ana", source="deploy.yaml", plan={"create": ["churn"]}
            )
            deploys.finish(record.id, status="applied", message="", plan={"created": ["churn"]})


def check_head(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        versions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    finally:
        conn.close()  # (sqlite3's context manager commits but leaves the file open)
    if versions != [RELEASE_HEAD]:
        sys.exit(f"the release left alembic_version {versions}, expected [{RELEASE_HEAD!r}]")


def compact(path: Path) -> None:
    """Fold the WAL into the file and shrink it: one small self-contained file to commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("VACUUM")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
