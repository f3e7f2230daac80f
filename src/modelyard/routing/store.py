"""``RouteStore``: the gateway's routing table in the control-plane database.

Writes go through the REST API and the CLI (both via :class:`RoutesAPI`); gateway workers poll
:meth:`RouteStore.revision` (one primary-key lookup) a few times a second and call
:meth:`RouteStore.load` when it changed.

Every write runs in one transaction that first bumps ``gateway_state.revision``. That makes the
revision move with every change, and it serialises writers: on SQLite the transaction holds the
write lock from its ``BEGIN IMMEDIATE``; on PostgreSQL the state row stays locked until commit, so
a writer's reads see everything the previous writer committed and nothing is check-then-act.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from modelyard.control.db import EngineStore
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.routing import discovery, keystore
from modelyard.routing import schema as s
from modelyard.routing.keys import ApiKey, check_key_name, check_limits
from modelyard.routing.table import (
    MAX_TIMEOUT_S,
    MAX_WEIGHT,
    PAYLOAD_MODES,
    ModelRoute,
    PayloadMode,
    RoutingTable,
    VersionRoute,
    check_name,
    check_replica_url,
)

__all__ = ["RouteStore"]

_DEFAULT = ModelRoute(project="", model="")  # the per-route option defaults of a new route
_REVISION = select(s.state.c.revision).where(s.state.c.id == s.STATE_ID)

Action = Callable[[Connection], None]


class RouteStore(EngineStore):
    """The routing table over an engine on the registry's database (already migrated).

    ``RouteStore(registry.engine)`` shares an open registry's engine; :meth:`open` makes its own.
    """

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        super().__init__(engine, owns_engine=owns_engine)
        # A load reads three tables, which must come from one snapshot. PostgreSQL's default READ
        # COMMITTED gives each statement a fresh one; SQLite's WAL read transactions are snapshots.
        postgres = engine.dialect.name == "postgresql"
        self._reader = engine.execution_options(isolation_level="REPEATABLE READ") if postgres else engine

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction that has already bumped the revision (and so holds the write lock)."""
        try:
            with super()._write() as conn:
                _bump_revision(conn)
                yield conn
        except IntegrityError:  # writers are serialised, so only an outside change gets here
            raise Conflict("the routing table changed meanwhile; try again") from None

    def _change(self, project: str, model: str, action: Action, *, create: bool = False) -> ModelRoute:
        """Run ``action`` on an existing (or, with ``create``, new) route; return the route after it."""
        with self._write() as conn:
            if create:
                _ensure_route(conn, project, model)
            else:
                _require_route(conn, project, model)
            action(conn)
            conn.execute(update(s.routes).where(_key(s.routes, project, model)).values(updated_at=_now()))
            return _read_routes(conn, (project, model))[0]

    # -- reads ------------------------------------------------------------------------------------

    def revision(self) -> int:
        """The table's revision: it grows with every write. One primary-key lookup, for polling."""
        with self._engine.connect() as conn:
            return _revision(conn)

    def load(self) -> RoutingTable:
        """The whole table and its revision, read from one snapshot."""
        with self._read() as conn:
            revision = _revision(conn)
            found = _read_routes(conn)
            keys, keyed = keystore.grants(conn), keystore.keyed(conn)
        routes = {(r.project, r.model): r for r in found}
        return RoutingTable(revision=revision, routes=routes, keys=keys, keyed=keyed)

    def get(self, project: str, model: str) -> ModelRoute:
        """One route; :class:`NotFound` (field ``model``) if there is none."""
        _check_route(project, model)
        with self._read() as conn:
            found = _read_routes(conn, (project, model))
        if not found:
            raise _route_missing(project, model)
        return found[0]

    def list(self) -> builtins.list[ModelRoute]:
        """Every route, by project and model."""
        with self._read() as conn:
            return _read_routes(conn)

    # -- writes -----------------------------------------------------------------------------------

    def set_weights(
        self, project: str, model: str, weights: Mapping[str, int], *, replace: bool = True
    ) -> ModelRoute:
        """Set versions' weights, creating the route and versions as needed.

        With ``replace`` every version not named gets weight 0: it stays, reachable when pinned.
        Weights are integers >= 0, and at least one version must end up above 0.
        """
        _check_route(project, model)
        checked = _check_weights(weights)

        def action(conn: Connection) -> None:
            where = _key(s.versions, project, model)
            current = {row.version: row.weight for row in conn.execute(select(s.versions).where(where))}
            merged = {**current, **dict.fromkeys(current if replace else (), 0), **checked}
            if not any(merged.values()):
                raise InvalidInput(
                    f"{project}/{model} needs a version with a weight above 0", field="weights"
                )
            if replace:
                conn.execute(update(s.versions).where(where).values(weight=0))
            for version, weight in checked.items():
                _upsert_version(conn, project, model, version, weight=weight)

        return self._change(project, model, action, create=True)

    def set_mirror(self, project: str, model: str, version: str, fraction: float = 1.0) -> ModelRoute:
        """Mirror ``fraction`` (0 < f <= 1) of the model's requests to ``version`` (created at weight 0)."""
        _check_version(project, model, version)
        _check_fraction(fraction, "fraction", allow_zero=False)
        action = _upserting(project, model, version, mirror=True, mirror_fraction=float(fraction))
        return self._change(project, model, action)

    def clear_mirror(self, project: str, model: str, version: str) -> ModelRoute:
        """Stop mirroring to ``version``."""
        _check_version(project, model, version)
        action = _updating(project, model, version, mirror=False, mirror_fraction=1.0)
        return self._change(project, model, action)

    def add_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute:
        """Add one replica to ``version`` (created at weight 0); :class:`Conflict` if it is there."""
        _check_version(project, model, version)
        url = _check_url(url, "url")

        def action(conn: Connection) -> None:
            _upsert_version(conn, project, model, version)
            where = and_(_key(s.replicas, project, model, version), s.replicas.c.url == url)
            if conn.execute(select(s.replicas.c.url).where(where)).first() is not None:
                raise Conflict(f"{project}/{model} {version} already has replica {url}", field="url")
            conn.execute(insert(s.replicas).values(project=project, model=model, version=version, url=url))

        return self._change(project, model, action)

    def remove_replica(self, project: str, model: str, version: str, url: str) -> ModelRoute:
        """Remove one replica of ``version``; :class:`NotFound` (field ``url``) if it is not there."""
        _check_version(project, model, version)
        url = _check_url(url, "url")

        def action(conn: Connection) -> None:
            _require_version(conn, project, model, version)
            where = and_(_key(s.replicas, project, model, version), s.replicas.c.url == url)
            if conn.execute(delete(s.replicas).where(where)).rowcount != 1:
                raise NotFound(f"{project}/{model} {version} has no replica {url}", field="url")

        return self._change(project, model, action)

    def set_replicas(self, project: str, model: str, version: str, urls: Sequence[str]) -> ModelRoute:
        """Make ``urls`` (duplicates dropped; may be empty) the replicas of ``version`` (created at 0)."""
        _check_version(project, model, version)
        if isinstance(urls, str) or not isinstance(urls, Sequence):
            raise InvalidInput("urls must be a list of replica URLs", field="urls")
        checked = list(dict.fromkeys(_check_url(url, f"urls.{i}") for i, url in enumerate(urls)))

        def action(conn: Connection) -> None:
            _upsert_version(conn, project, model, version)
            conn.execute(delete(s.replicas).where(_key(s.replicas, project, model, version)))
            if checked:
                rows = [{"project": project, "model": model, "version": version, "url": u} for u in checked]
                conn.execute(insert(s.replicas), rows)

        return self._change(project, model, action)

    def set_options(
        self,
        project: str,
        model: str,
        *,
        timeout_s: float | None = None,
        log_payload: str | None = None,
        log_sample: float | None = None,
        target: Mapping[str, str] | None = None,
    ) -> ModelRoute:
        """Change a route's options; ``target`` maps versions to their names on the replicas ("" resets)."""
        _check_route(project, model)
        values = _check_options(timeout_s, log_payload, log_sample)
        targets = _check_targets(target)

        def action(conn: Connection) -> None:
            if values:
                conn.execute(update(s.routes).where(_key(s.routes, project, model)).values(**values))
            for version, name in targets.items():
                _updating(project, model, version, target=name)(conn)

        return self._change(project, model, action)

    def remove_version(self, project: str, model: str, version: str) -> ModelRoute:
        """Remove ``version`` and its replicas from the route."""
        _check_version(project, model, version)

        def action(conn: Connection) -> None:
            _require_version(conn, project, model, version)
            conn.execute(delete(s.replicas).where(_key(s.replicas, project, model, version)))
            conn.execute(delete(s.versions).where(_key(s.versions, project, model, version)))

        return self._change(project, model, action)

    # -- API keys (keys.py, keystore.py): writes bump the revision, so gateways load them ----------

    def create_key(
        self,
        project: str,
        name: str,
        rate_per_s: float | None = None,
        burst: int | None = None,
        *,
        created_by: str = "",
    ) -> tuple[ApiKey, str]:
        """A new API key for inference on ``project``: its record and the key, which is stored
        nowhere and cannot be shown again. From then on the project takes requests only with one
        of its keys, until :meth:`forget_keys`. ``rate_per_s`` None: no rate limit; ``burst``
        defaults to a second's worth."""
        rate, checked_burst = check_limits(project, rate_per_s, burst)
        check_key_name(name)
        with self._write() as conn:
            return keystore.create(conn, project, name, rate, checked_burst, created_by, _now())

    def list_keys(
        self, project: str | None = None, *, include_revoked: bool = False
    ) -> builtins.list[ApiKey]:
        """The API keys (of ``project``, or all): records, never keys."""
        if project is not None:
            check_name(project, "project")
        with self._read() as conn:
            return keystore.listed(conn, project, include_revoked)

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke an API key by its id; gateways refuse it from their next poll on. The project
        stays closed to requests without a key, even when that was its last key."""
        with self._write() as conn:
            return keystore.revoke(conn, key_id, _now())

    def forget_keys(self, project: str) -> int:
        """Delete ``project``'s revoked keys, opening it to requests without a key again;
        :class:`Conflict` while it has an active key. The number of keys forgotten."""
        check_name(project, "project")
        with self._write() as conn:
            return keystore.forget(conn, project)

    # -- endpoint discovery (discovery.py) ----------------------------------------------------------

    def heartbeat(
        self, project: str, model: str, version: str, url: str, *, ready: bool = True, ttl_s: float = 10.0
    ) -> bool:
        """A replica says it is alive (and whether it is ready) for the next ``ttl_s`` seconds.

        Returns True when that changed the routing table (then its revision moved)."""
        _check_version(project, model, version)
        url = _check_url(url, "url")
        if not _is_number(ttl_s) or not 0 < ttl_s <= MAX_TIMEOUT_S:
            raise InvalidInput(
                f"ttl_s {ttl_s!r} must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]", field="ttl_s"
            )
        with self._writer.begin() as conn:
            changed = discovery.upsert(conn, project, model, version, url, bool(ready), _now(), float(ttl_s))
            if changed:
                _bump_revision(conn)
        return changed

    def deregister(self, project: str, model: str, version: str, url: str) -> None:
        """A replica leaves (on a clean shutdown); the gateways stop routing to it at once."""
        _check_version(project, model, version)
        with self._writer.begin() as conn:
            if discovery.remove(conn, project, model, version, _check_url(url, "url")):
                _bump_revision(conn)

    def expire(self) -> int:
        """Drop endpoints whose heartbeats stopped; the number dropped (the revision moves if any)."""
        now = _now()
        with self._engine.connect() as conn:
            if not discovery.expired(conn, now):
                return 0
        with self._writer.begin() as conn:
            dropped = discovery.remove_expired(conn, now)
            if dropped:
                _bump_revision(conn)
        return dropped

    def endpoints(self) -> builtins.list[discovery.Announcement]:
        """Every announced replica, live or not (for ``modelyard route endpoints``)."""
        with self._read() as conn:
            return discovery.all_endpoints(conn)

    def delete(self, project: str, model: str) -> None:
        """Remove the route with all its versions and replicas."""
        _check_route(project, model)
        with self._write() as conn:
            _require_route(conn, project, model)
            for table in (s.replicas, s.versions, s.routes):  # children first; no reliance on CASCADE
                conn.execute(delete(table).where(_key(table, project, model)))


# -- validation -----------------------------------------------------------------------------------


def _check_route(project: str, model: str) -> None:
    check_name(project, "project")
    check_name(model, "model")


def _check_version(project: str, model: str, version: str) -> None:
    _check_route(project, model)
    check_name(version, "version")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_fraction(value: object, field: str, *, allow_zero: bool) -> float:
    # Written as "not (in range)" so that NaN, which fails every comparison, is refused too.
    if not _is_number(value) or not (0 <= cast(float, value) <= 1) or (not allow_zero and value == 0):
        low = "0 <=" if allow_zero else "0 <"
        raise InvalidInput(f"{field} must be a number with {low} {field} <= 1", field=field)
    return float(cast(float, value))


def _check_url(url: str, field: str) -> str:
    checked = check_replica_url(url, field)
    if len(checked) > s.URL_LENGTH:
        raise InvalidInput(f"replica URL is longer than {s.URL_LENGTH} characters", field=field)
    return checked


def _check_weights(weights: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidInput("give the weight of at least one version", field="weights")
    checked: dict[str, int] = {}
    for version, weight in weights.items():
        check_name(version, "weights")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise InvalidInput(
                f"the weight of {version} must be an integer from 0 to {MAX_WEIGHT}",
                field=f"weights.{version}",
            )
        checked[version] = weight
    return checked


def _check_options(timeout_s: object, log_payload: object, log_sample: object) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if timeout_s is not None:
        if not _is_number(timeout_s) or not (0 < cast(float, timeout_s) <= MAX_TIMEOUT_S):
            raise InvalidInput(f"timeout_s must be above 0 and at most {MAX_TIMEOUT_S:g}", field="timeout_s")
        values["timeout_s"] = float(cast(float, timeout_s))
    if log_payload is not None:
        if log_payload not in PAYLOAD_MODES:
            raise InvalidInput(f"log_payload must be one of {', '.join(PAYLOAD_MODES)}", field="log_payload")
        values["log_payload"] = log_payload
    if log_sample is not None:
        values["log_sample"] = _check_fraction(log_sample, "log_sample", allow_zero=True)
    return values


def _check_targets(target: Mapping[str, str] | None) -> dict[str, str]:
    if target is None:
        return {}
    if not isinstance(target, Mapping):
        raise InvalidInput("target must map versions to model names", field="target")
    for version, name in target.items():
        check_name(version, "target")
        if name != "":  # "" means: the routed model's own name
            check_name(name, f"target.{version}")
    return dict(target)


# -- queries --------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _key(table: Table, project: str, model: str, version: str | None = None) -> ColumnElement[bool]:
    clause = and_(table.c.project == project, table.c.model == model)
    return clause if version is None else and_(clause, table.c.version == version)


def _revision(conn: Connection) -> int:
    return int(conn.execute(_REVISION).scalar() or 0)


def _bump_revision(conn: Connection) -> None:
    bump = update(s.state).where(s.state.c.id == s.STATE_ID).values(revision=s.state.c.revision + 1)
    if conn.execute(bump).rowcount == 1:
        return
    # The row is gone (a truncated database): put it back. Two writers may both get here; the
    # loser's insert fails on the primary key once the winner commits, and its update then counts.
    try:
        with conn.begin_nested():
            conn.execute(insert(s.state).values(id=s.STATE_ID, revision=1))
    except IntegrityError:
        conn.execute(bump)


def _route_missing(project: str, model: str) -> NotFound:
    return NotFound(f"route {project}/{model} not found", field="model")


def _require_route(conn: Connection, project: str, model: str) -> None:
    if conn.execute(select(s.routes.c.project).where(_key(s.routes, project, model))).first() is None:
        raise _route_missing(project, model)


def _ensure_route(conn: Connection, project: str, model: str) -> None:
    if conn.execute(select(s.routes.c.project).where(_key(s.routes, project, model))).first() is None:
        conn.execute(
            insert(s.routes).values(
                project=project,
                model=model,
                timeout_s=_DEFAULT.timeout_s,
                log_payload=_DEFAULT.log_payload,
                log_sample=_DEFAULT.log_sample,
                updated_at=_now(),
            )
        )


def _require_version(conn: Connection, project: str, model: str, version: str) -> None:
    found = conn.execute(select(s.versions.c.version).where(_key(s.versions, project, model, version)))
    if found.first() is None:
        raise NotFound(f"version {version} of {project}/{model} not found", field="version")


def _upsert_version(conn: Connection, project: str, model: str, version: str, **values: Any) -> None:
    """Update ``version`` with ``values``, or insert it (weight 0, no mirror, default target) first."""
    where = _key(s.versions, project, model, version)
    if conn.execute(select(s.versions.c.version).where(where)).first() is None:
        row = {"weight": 0, "mirror": False, "mirror_fraction": 1.0, "target": "", **values}
        conn.execute(insert(s.versions).values(project=project, model=model, version=version, **row))
    elif values:
        conn.execute(update(s.versions).where(where).values(**values))


def _upserting(project: str, model: str, version: str, **values: Any) -> Action:
    return lambda conn: _upsert_version(conn, project, model, version, **values)


def _updating(project: str, model: str, version: str, **values: Any) -> Action:
    """An action updating an existing version; :class:`NotFound` (field ``version``) if it is not there."""

    def action(conn: Connection) -> None:
        _require_version(conn, project, model, version)
        conn.execute(update(s.versions).where(_key(s.versions, project, model, version)).values(**values))

    return action


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting v2 before v10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def _read_routes(conn: Connection, only: tuple[str, str] | None = None) -> list[ModelRoute]:
    """Routes (all, or the one ``only`` names) with their versions and replicas, from three queries."""

    def rows(table: Table) -> Any:
        statement = select(table)
        return conn.execute(statement if only is None else statement.where(_key(table, *only)))

    urls: dict[tuple[str, str, str], set[str]] = {}
    for row in rows(s.replicas):
        urls.setdefault((row.project, row.model, row.version), set()).add(row.url)
    for project, model, version, url in discovery.live_urls(conn, _now(), only):
        urls.setdefault((project, model, version), set()).add(url)
    versions: dict[tuple[str, str], list[VersionRoute]] = {}
    for row in rows(s.versions):
        replicas = tuple(sorted(urls.get((row.project, row.model, row.version), [])))
        versions.setdefault((row.project, row.model), []).append(
            VersionRoute(
                version=row.version,
                weight=int(row.weight),
                mirror=bool(row.mirror),
                mirror_fraction=float(row.mirror_fraction),
                target=row.target,
                replicas=replicas,
            )
        )
    routes = [
        ModelRoute(
            project=row.project,
            model=row.model,
            versions=tuple(
                sorted(versions.get((row.project, row.model), []), key=lambda v: _natural(v.version))
            ),
            timeout_s=float(row.timeout_s),
            log_payload=cast(PayloadMode, row.log_payload),
            log_sample=float(row.log_sample),
        )
        for row in rows(s.routes)
    ]
    return sorted(routes, key=lambda r: (r.project, r.model))
