"""The control-plane database: the one ``MetaData`` every plane's tables join, engines, migrating a
database to the newest schema with Alembic (``migrations/`` holds every plane's revisions), and
:class:`EngineStore`, the engine handling every plane's store shares."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError

from modelyard.control.settings import ControlSettings
from modelyard.errors import InvalidInput

__all__ = ["WRITE", "EngineStore", "create_engine_for", "metadata", "migrate", "open_migrated"]

# Execution option marking a connection that will write: on SQLite it starts with BEGIN IMMEDIATE.
WRITE = "modelyard_write"
MIGRATIONS = Path(__file__).with_name("migrations")

# Every table of the control plane (registry, routing table, deploy history) is defined on this one
# MetaData, so foreign keys may cross planes and the migrations see one schema.
metadata = MetaData()


def create_engine_for(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and explicit BEGINs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # Take transaction control away from pysqlite so that _sqlite_begin decides how each one starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front. A deferred transaction that read first and then tries
    # to write can fail at once with "database is locked" (SQLite's deadlock avoidance) instead of
    # waiting its turn; IMMEDIATE makes writers queue on the busy timeout.
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``; no alembic.ini is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(**{WRITE: True}).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_migrated(url: str) -> Engine:
    """An engine for ``url`` whose database is migrated to the newest schema (disposed on failure):
    what every store that opens its own engine (routes, deploy history) starts from."""
    engine = create_engine_for(url)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def as_utc(value: datetime) -> datetime:
    """A timestamp read back from the database, in UTC: SQLite hands back naive datetimes even for
    ``DateTime(timezone=True)`` columns, and everything modelyard stores is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EngineStore:
    """The engine handling of a store on the control-plane database (already migrated): the routes,
    the deploy history, rollouts, tokens, validation jobs.

    ``Store(registry.engine)`` shares an open registry's engine, which stays its owner's to close;
    :meth:`open` makes the store its own engine, which :meth:`close` disposes of.
    """

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE: True})
        self._owns_engine = owns_engine

    @classmethod
    def open(cls, settings: ControlSettings) -> Self:
        """A store on ``settings``' database, migrated to the newest schema first."""
        return cls(open_migrated(settings.resolved_database_url()), owns_engine=True)

    @property
    def engine(self) -> Engine:
        """The engine the store runs on (its own, or the one it shares)."""
        return self._engine

    def close(self) -> None:
        """Release the engine if this store created it (a shared engine belongs to its owner)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (on SQLite it holds the write lock from its BEGIN IMMEDIATE)."""
        try:
            with self._writer.begin() as conn:
                yield conn
        except DataError as exc:  # a value the database refuses: the caller's fault, not a 500
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
            raise InvalidInput(f"the database refused a value: {reason}") from None
