"""Registry scale: do listing and ref resolution stay flat from 100 to 100,000 versions?

Builds two SQLite registries with one model each, holding 100 and 100,000 versions (the rows are
bulk-inserted through SQLAlchemy Core; the artifacts are not needed for these queries), then times,
as the median of many calls, on each:

- the first page of the model's versions (50 per page),
- a deep page reached with a page token (the last page: the oldest versions),
- ``name@alias`` resolution, ``name/<n>`` resolution and ``name`` (latest) resolution,
- the first page of the model list (which shows each model's latest version and aliases).

It prints each operation's ratio t(100k) / t(100); the target is <= 2x. Run:

    .venv/bin/python benchmarks/registry_scale.py [--large 100000] [--repeat 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, make_url, select, text

from modelyard.registry import ControlSettings, Registry
from modelyard.registry import schema as t
from modelyard.registry.pages import encode_token

MODEL = "big"
PAGE = 50
BATCH = 10_000


def build(home: Path, count: int, database_url: str | None = None) -> Registry:
    """A registry whose model ``big`` has ``count`` versions and aliases on two of them."""
    registry = Registry(ControlSettings(home=home, database_url=database_url))
    registry.create_model(MODEL, "scale test")
    now = datetime.now(UTC)
    with registry.engine.begin() as conn:
        model_id = conn.execute(select(t.models.c.id).where(t.models.c.name == MODEL)).scalar_one()
        for start in range(1, count + 1, BATCH):
            rows = [_row(model_id, number, now) for number in range(start, min(start + BATCH, count + 1))]
            conn.execute(insert(t.versions), rows)
    registry.set_alias(MODEL, "production", count // 2, user="bench")
    registry.set_alias(MODEL, "staging", count, user="bench")
    return registry


def _row(model_id: int, number: int, now: datetime) -> dict[str, Any]:
    digest = f"{number:064x}"
    return {
        "model_id": model_id, "version": number, "artifact_uri": f"memory://bench/sha256/{digest}",
        "sha256": digest, "size": 1000 + number, "filename": f"model-{number}.onnx",
        "description": f"version {number}", "user": "bench", "source_run": f"run-{number}",
        "metrics": {"accuracy": 0.9}, "params": {"depth": "4"}, "labels": {}, "manifest": None,
        "created_at": now,
    }  # fmt: skip


def operations(registry: Registry, count: int) -> dict[str, Callable[[], object]]:
    # The deep page is the last one. A client reaches it by following tokens; building the token
    # directly times exactly the query that that last request runs.
    deep = encode_token(PAGE + 1, {"list": "versions", "model": MODEL, "search": ""})
    middle = count // 3
    return {
        "list versions, first page": lambda: registry.list_versions(MODEL, page_size=PAGE),
        "list versions, deep page (token)": lambda: registry.list_versions(
            MODEL, page_size=PAGE, page_token=deep
        ),
        "resolve name@alias": lambda: registry.resolve(f"{MODEL}@production"),
        "resolve name/N": lambda: registry.resolve(f"{MODEL}/{middle}"),
        "resolve name (latest)": lambda: registry.resolve(MODEL),
        "list models, first page": lambda: registry.list_models(page_size=PAGE),
    }


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    for _ in range(max(5, repeat // 10)):  # warm caches and the connection pool
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _admin(url: str) -> Engine:
    return create_engine(url, isolation_level="AUTOCOMMIT")


def scratch_database(admin_url: str, count: int) -> str:
    """Create an empty database for one size; returns its URL."""
    name = f"modelyard_bench_{count}"
    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, count: int) -> None:
    engine = _admin(admin_url)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS modelyard_bench_{count} WITH (FORCE)"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="measure on PostgreSQL instead of SQLite, e.g. postgresql+psycopg://postgres@127.0.0.1/postgres"
        " (a scratch database is created per size and dropped afterwards)",
    )
    args = parser.parse_args()
    timings: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as folder:
        for count in (args.small, args.large):
            started = time.perf_counter()
            url = scratch_database(args.postgres, count) if args.postgres else None
            registry = build(Path(folder) / str(count), count, url)
            print(f"built {count:>7} versions in {time.perf_counter() - started:.1f} s")
            try:
                ops = operations(registry, count)
                assert ops["list versions, deep page (token)"]().items  # type: ignore[attr-defined]
                timings[count] = {name: median_seconds(call, args.repeat) for name, call in ops.items()}
            finally:
                registry.close()
                if args.postgres:
                    drop_database(args.postgres, count)
    small, large = timings[args.small], timings[args.large]
    print(f"\n{'operation':<36} ratio t({args.large}) / t({args.small})")
    for name in small:
        ratio, at_small = large[name] / small[name], small[name] * 1e3
        print(f"{name:<36} {ratio:5.2f}x   (median {at_small:.2f} ms at {args.small})")
    worst = max(large[name] / small[name] for name in small)
    print(f"\nworst ratio: {worst:.2f}x (target <= 2x): {'OK' if worst <= 2 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
