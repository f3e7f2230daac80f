"""The transport-free registry: models, versions, aliases and usages over SQLAlchemy and a store.

Every method opens its own short transaction. Races are settled by the database (unique keys,
compare-and-set updates, RESTRICT foreign keys) and surface as :class:`modelyard.errors.Conflict`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError

from modelyard.control.db import WRITE, as_utc, create_engine_for, migrate
from modelyard.control.settings import ControlSettings
from modelyard.errors import Conflict, InvalidInput, NotFound, PackageInvalid
from modelyard.registry import queries as q
from modelyard.registry import rows
from modelyard.registry import schema as t
from modelyard.registry.aliases import move_alias, record_event, remove_alias
from modelyard.registry.files import download_verified, file_chunks
from modelyard.registry.packages import PACKAGE_SUFFIX, inspect_package, is_package_name
from modelyard.registry.pages import decode_token, encode_token, page_size
from modelyard.registry.refs import (
    ModelRef,
    check_alias,
    check_consumer,
    check_name,
    check_text,
    parse_ref,
)
from modelyard.registry.store import ArtifactStore, FsspecArtifactStore, check_digest
from modelyard.registry.types import (
    Alias,
    AliasEvent,
    ModelVersion,
    NewValidation,
    NewVersion,
    Page,
    RegisteredModel,
    StoredArtifact,
    Validation,
    VersionUsage,
)
from modelyard.registry.validations import insert_validation, latest_validations, require_passing

__all__ = ["Registry"]

_AUTO_VERSION_ATTEMPTS = 20  # racing registrations without an explicit version each retry with max + 1


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """The model registry. Opening one migrates its database to the newest schema.

    Args:
        settings: where the database and the artifacts live (default: from the environment).
        store: an artifact store to use instead of the one ``settings.artifact_url`` names.
    """

    def __init__(
        self, settings: ControlSettings | None = None, *, store: ArtifactStore | None = None
    ) -> None:
        self.settings = settings if settings is not None else ControlSettings.from_env()
        self._engine = create_engine_for(self.settings.resolved_database_url())
        self._writer = self._engine.execution_options(**{WRITE: True})
        migrate(self._engine)
        self.store: ArtifactStore = store or FsspecArtifactStore(self.settings.resolved_artifact_url())

    @property
    def engine(self) -> Engine:
        """The database engine, for bulk tools (imports, benchmarks) that go below the methods."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except DataError as exc:  # a value the database refuses (too long, out of range, NUL)
            raise _invalid(exc) from None

    @contextlib.contextmanager
    def _write(self, conflict: str | None = None) -> Iterator[Connection]:
        """A write transaction; with ``conflict``, a constraint violation becomes that Conflict."""
        try:
            with self._writer.begin() as conn:
                yield conn
        except DataError as exc:
            raise _invalid(exc) from None
        except IntegrityError:
            if conflict is None:
                raise
            raise Conflict(conflict) from None

    def _page_size(self, requested: int | None) -> int:
        return page_size(requested, self.settings.default_page_size, self.settings.max_page_size)

    # -- models -----------------------------------------------------------------------------------

    def create_model(self, name: str, description: str = "") -> RegisteredModel:
        """Register a new model name; :class:`Conflict` if it exists."""
        now = _now()
        check_text(description, "description")
        with self._write(f"model '{check_name(name)}' already exists") as conn:
            conn.execute(
                insert(t.models).values(name=name, description=description, created_at=now, updated_at=now)
            )
        return self.get_model(name)

    def get_model(self, name: str) -> RegisteredModel:
        with self._read() as conn:
            row = q.model_row(conn, name)
            latest = q.latest_versions(conn, [row.id]).get(row.id)
            return q.to_model(row, latest, q.aliases_by_model(conn, [row.id]).get(row.id, {}))

    def update_model(self, name: str, description: str) -> RegisteredModel:
        check_name(name)
        check_text(description, "description")
        with self._write() as conn:
            done = conn.execute(
                update(t.models)
                .where(t.models.c.name == name)
                .values(description=description, updated_at=_now())
            )
            if done.rowcount != 1:
                raise NotFound(f"model '{name}' not found", field="model")
        return self.get_model(name)

    def delete_model(self, name: str) -> None:
        """Delete a model that has no versions left (delete those first, so their checks apply)."""
        with self._write(f"model '{name}' got a new version meanwhile") as conn:
            model = q.model_id(conn, name)
            count = conn.execute(select(func.count()).where(t.versions.c.model_id == model)).scalar_one()
            if count:
                raise Conflict(
                    f"model '{name}' still has {count} version(s): delete them first", field="model"
                )
            conn.execute(delete(t.alias_events).where(t.alias_events.c.model_id == model))
            conn.execute(delete(t.models).where(t.models.c.id == model))

    def list_models(
        self, search: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[RegisteredModel]:
        """Models by name; ``search`` matches name or description, case-insensitively."""
        query = {"list": "models", "search": check_text(search or "", "search")}
        after, limit = decode_token(page_token, query, str), self._page_size(page_size)
        statement = select(t.models).order_by(t.models.c.name).limit(limit + 1)
        if search:
            statement = statement.where(q.contains([t.models.c.name, t.models.c.description], search))
        if after is not None:
            statement = statement.where(t.models.c.name > str(after))
        with self._read() as conn:
            rows = list(conn.execute(statement))[: limit + 1]
            page = rows[:limit]
            ids = [row.id for row in page]
            latest, aliases = q.latest_versions(conn, ids), q.aliases_by_model(conn, ids)
        items = [q.to_model(row, latest.get(row.id), aliases.get(row.id, {})) for row in page]
        token = encode_token(page[-1].name, query) if len(rows) > limit else None
        return Page[RegisteredModel](items=items, next_page_token=token)

    # -- versions ---------------------------------------------------------------------------------

    def upload(
        self, chunks: Iterable[bytes], *, expected_size: int | None = None, expected_sha256: str | None = None
    ) -> StoredArtifact:
        """Stream bytes into the store (content-addressed); refuses more than ``max_upload_bytes``."""
        return self.store.put(
            chunks,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
            max_size=self.settings.max_upload_bytes,
        )

    def push(
        self,
        path: Path,
        name: str | None = None,
        spec: NewVersion | None = None,
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Upload a local file and register it as a new version of ``name``.

        For a model package (``*.modelyard``) the verified manifest is stored with the version and
        supplies defaults: the model name, description, author (as user) and labels.
        """
        manifest = inspect_package(path)
        spec = spec or NewVersion()
        if spec.filename == NewVersion().filename:
            spec = spec.model_copy(update={"filename": path.name})
        name = name or (str(manifest["name"]) if manifest and manifest.get("name") else path.stem)
        with path.open("rb") as handle:
            stored = self.upload(file_chunks(handle), expected_size=path.stat().st_size)
        try:
            return self.register(name, stored.sha256, spec, aliases=aliases, manifest=manifest)
        except BaseException:
            self._collect(stored.sha256)
            raise

    def register(
        self,
        name: str,
        sha256: str,
        spec: NewVersion | None = None,
        *,
        aliases: Sequence[str] = (),
        manifest: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register uploaded bytes as a version of ``name`` (created if new); then point ``aliases`` at it.

        Without ``spec.version`` the version is the model's latest + 1. An explicit version that
        exists already, or that another client registers first, raises :class:`Conflict`. For a
        package (``spec.filename`` ending ``.modelyard``) the manifest is read from the stored
        bytes unless given, and fills the description, user and labels the caller left empty.
        """
        spec = spec or NewVersion()
        check_name(name)
        aliases = sorted({check_alias(alias) for alias in aliases})  # one order: no lock-order deadlocks
        stored = self.store.stat(check_digest(sha256))
        if stored is None:
            raise NotFound(f"no uploaded artifact has sha256 {sha256}: upload it first", field="sha256")
        if manifest is None and is_package_name(spec.filename):
            manifest = self._manifest_from_store(stored)
        spec = rows.revalidated(rows.with_manifest_defaults(spec, manifest))
        number = self._insert_version(name, stored, spec, manifest, aliases)
        return self.get_version(name, number)

    def _insert_version(
        self,
        name: str,
        stored: StoredArtifact,
        spec: NewVersion,
        manifest: dict[str, Any] | None,
        aliases: Sequence[str],
    ) -> int:
        """Create the model if new, insert the version and move ``aliases``: all in one transaction.

        So a registration either leaves everything behind or nothing (no empty model, no version
        whose aliases were not moved).
        """
        # A model created by its first push takes the package's description (later pushes don't
        # overwrite what someone may have edited since).
        package_description = str(manifest.get("description") or "") if manifest else ""
        for _ in range(_AUTO_VERSION_ATTEMPTS):
            try:
                with self._write() as conn:
                    rows.lock_digest(conn, stored.sha256)
                    if self.store.stat(stored.sha256) is None:  # collected since we looked: push again
                        raise NotFound(f"artifact {stored.sha256} was deleted meanwhile", field="sha256")
                    model = rows.ensure_model(conn, name, check_text(package_description, "description"))
                    number = spec.version or 1 + (q.latest_versions(conn, [model]).get(model) or 0)
                    try:
                        with conn.begin_nested():
                            values = rows.version_values(model, number, stored, spec, manifest)
                            conn.execute(insert(t.versions).values(values))
                    except IntegrityError:
                        if spec.version is not None:
                            raise Conflict(
                                f"model '{name}' already has version {spec.version}", field="version"
                            ) from None
                        raise
                    now = _now()
                    for alias in aliases:
                        move_alias(conn, model, alias, number, spec.user, None, now)
                return number
            except IntegrityError:
                continue  # another registration took the number: try the next
        raise Conflict(f"could not allocate a version of '{name}': too many concurrent registrations")

    def _manifest_from_store(self, stored: StoredArtifact) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory(prefix="modelyard-") as folder:
            path = Path(folder) / f"artifact{PACKAGE_SUFFIX}"
            with self.store.open(stored.sha256) as source, path.open("wb") as out:
                for chunk in file_chunks(source):
                    out.write(chunk)
            try:
                return inspect_package(path)
            except PackageInvalid as exc:  # name the upload, never this server's temporary path
                where = f"the uploaded package {stored.sha256[:12]}"
                field = "sha256" if exc.field in (None, str(path)) else exc.field
                raise PackageInvalid(exc.message.replace(str(path), where), field=field) from None

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._read() as conn:
            model = q.model_id(conn, name)
            row = q.version_row(conn, model, name, version)
            return q.to_version(row, name, q.aliases_by_version(conn, model, [version]).get(version, []))

    def list_versions(
        self,
        name: str,
        search: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        """A model's versions, newest first; ``search`` matches description, user, source run, file name."""
        query = {"list": "versions", "model": name, "search": check_text(search or "", "search")}
        before, limit = decode_token(page_token, query, int), self._page_size(page_size)
        with self._read() as conn:
            model = q.model_id(conn, name)
            statement = (
                select(t.versions).where(t.versions.c.model_id == model).order_by(t.versions.c.version.desc())
            )
            if search:
                columns = [t.versions.c.description, t.versions.c.user, t.versions.c.source_run]
                statement = statement.where(q.contains([*columns, t.versions.c.filename], search))
            if before is not None:
                statement = statement.where(t.versions.c.version < int(before))
            rows = list(conn.execute(statement.limit(limit + 1)))
            page = rows[:limit]
            aliases = q.aliases_by_version(conn, model, [row.version for row in page])
        items = [q.to_version(row, name, aliases.get(row.version, [])) for row in page]
        token = encode_token(page[-1].version, query) if len(rows) > limit else None
        return Page[ModelVersion](items=items, next_page_token=token)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version ``ref`` names: ``name`` (latest), ``name/3`` or ``name@alias``."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        with self._read() as conn:
            model = q.model_id(conn, parsed.name)
            number = parsed.version
            if parsed.alias is not None:
                number = conn.execute(
                    select(t.aliases.c.version).where(
                        and_(t.aliases.c.model_id == model, t.aliases.c.alias == parsed.alias)
                    )
                ).scalar()
                if number is None:
                    raise NotFound(f"model '{parsed.name}' has no alias '{parsed.alias}'", field="alias")
            elif number is None:
                number = q.latest_versions(conn, [model]).get(model)
                if number is None:
                    raise NotFound(f"model '{parsed.name}' has no versions", field="version")
            row = q.version_row(conn, model, parsed.name, int(number))
            aliases = q.aliases_by_version(conn, model, [row.version]).get(row.version, [])
            return q.to_version(row, parsed.name, aliases)

    def artifact_chunks(self, version: ModelVersion) -> Iterator[bytes]:
        """The artifact's bytes, streamed from the store."""
        with self.store.open(version.sha256) as handle:
            yield from file_chunks(handle)

    def fetch(self, ref: str | ModelRef, dest_dir: Path | None = None) -> Path:
        """A local, checksum-verified copy of ``ref``'s artifact; an intact copy already there is reused.

        The default folder is ``<cache_dir>/<sha256>/``, so every version with the same bytes shares one.
        """
        version = self.resolve(ref)
        folder = dest_dir if dest_dir is not None else self.settings.resolved_cache_dir() / version.sha256
        return download_verified(version, folder, lambda: self.artifact_chunks(version))

    def delete_version(self, name: str, version: int, *, force: bool = False) -> None:
        """Delete a version (its aliases go with it); the bytes too when no other version has them.

        Refuses with :class:`Conflict` naming the consumers while the version is marked used,
        unless ``force``.
        """
        with self._write(f"model '{name}' version {version} was just marked used; try again") as conn:
            model = q.model_id(conn, name)
            row = q.version_row(conn, model, name, version)
            users = [
                r.consumer
                for r in conn.execute(select(t.version_usages).where(t.version_usages.c.version_id == row.id))
            ]
            if users and not force:
                who = ", ".join(sorted(users))
                raise Conflict(
                    f"model '{name}' version {version} is in use by {who}; use force to delete",
                    field="version",
                )
            conn.execute(delete(t.version_usages).where(t.version_usages.c.version_id == row.id))
            conn.execute(delete(t.validations).where(t.validations.c.version_id == row.id))
            self._drop_aliases_of(conn, model, version)
            conn.execute(delete(t.versions).where(t.versions.c.id == row.id))
        self._collect(row.sha256)

    def _drop_aliases_of(self, conn: Connection, model: int, version: int) -> None:
        now = _now()
        pointing = select(t.aliases.c.alias).where(
            and_(t.aliases.c.model_id == model, t.aliases.c.version == version)
        )
        for alias in list(conn.execute(pointing).scalars()):
            record_event(conn, model, alias, (version, None), "", now)
        conn.execute(
            delete(t.aliases).where(and_(t.aliases.c.model_id == model, t.aliases.c.version == version))
        )

    def _collect(self, sha256: str) -> None:
        """Delete the bytes if no version refers to them any more.

        The check and the delete run under the digest's lock (see :func:`_lock_digest`), which a
        registration of the same bytes also takes before it checks they exist and inserts its row:
        either the registration sees the bytes gone (NotFound), or this sees its row and keeps them.
        """
        with self._write() as conn:
            rows.lock_digest(conn, sha256)
            used = conn.execute(select(t.versions.c.id).where(t.versions.c.sha256 == sha256).limit(1)).first()
            if used is None:
                self.store.delete(sha256)

    def collect_garbage(
        self, older_than: timedelta = timedelta(hours=1), dry_run: bool = False
    ) -> list[StoredArtifact]:
        """Delete stored bytes that no version references and that are older than ``older_than``.

        Such bytes are left by uploads never registered (a refused or abandoned registration). The
        age threshold spares an upload whose registration is still on its way. Each blob is checked
        and deleted under its digest's lock, as in :meth:`_collect`, so a racing registration either
        keeps its bytes or fails cleanly with NotFound. Returns what was (with ``dry_run``: would be)
        deleted.
        """
        if older_than < timedelta(0):
            raise InvalidInput("older_than must not be negative", field="older_than")
        cutoff = _now() - min(older_than, timedelta(days=365_000))  # no datetime underflow
        removed: list[StoredArtifact] = []
        for blob in list(self.store.list()):
            if blob.modified_at > cutoff:
                continue
            with self._write() as conn:
                rows.lock_digest(conn, blob.sha256)
                used = conn.execute(
                    select(t.versions.c.id).where(t.versions.c.sha256 == blob.sha256).limit(1)
                ).first()
                if used is not None:
                    continue
                if not dry_run:
                    self.store.delete(blob.sha256)
            removed.append(StoredArtifact(sha256=blob.sha256, size=blob.size, uri=blob.uri))
        return removed

    # -- aliases ----------------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        user: str = "",
        expected_revision: int | None = None,
        require_validation: bool = False,
    ) -> Alias:
        """Point ``alias`` at ``version``, recording the move in the history.

        ``expected_revision`` makes it a compare-and-set: the alias's current revision, or 0 for
        "must not exist yet". If another client moved it first, :class:`Conflict`. With
        ``require_validation``, :class:`Conflict` unless the version's latest verdict is a pass.
        """
        check_alias(alias)
        check_text(user, "user", 200)
        with self._write(f"alias '{alias}' of '{name}' was changed by another client; read it again") as conn:
            model = q.model_id(conn, name)
            row = q.version_row(conn, model, name, version)
            if require_validation:
                require_passing(conn, int(row.id), name, version)
            move_alias(conn, model, alias, version, user, expected_revision, _now())
        return self.get_alias(name, alias)

    def delete_alias(
        self, name: str, alias: str, *, user: str = "", expected_revision: int | None = None
    ) -> None:
        check_alias(alias)
        check_text(user, "user", 200)
        with self._write(f"alias '{alias}' of '{name}' was changed by another client") as conn:
            remove_alias(conn, q.model_id(conn, name), alias, user, expected_revision, _now())

    def get_alias(self, name: str, alias: str) -> Alias:
        check_alias(alias)
        with self._read() as conn:
            model = q.model_id(conn, name)
            row = conn.execute(
                select(t.aliases).where(and_(t.aliases.c.model_id == model, t.aliases.c.alias == alias))
            ).first()
        if row is None:
            raise NotFound(f"model '{name}' has no alias '{alias}'", field="alias")
        return q.to_alias(row, name)

    def list_aliases(self, name: str) -> list[Alias]:
        with self._read() as conn:
            model = q.model_id(conn, name)
            rows = conn.execute(
                select(t.aliases).where(t.aliases.c.model_id == model).order_by(t.aliases.c.alias)
            )
            return [q.to_alias(row, name) for row in rows]

    def alias_history(
        self, name: str, alias: str | None = None, page_size: int | None = None, page_token: str | None = None
    ) -> Page[AliasEvent]:
        """Every move of the model's aliases (or of one alias), newest first."""
        if alias:
            check_alias(alias)
        query = {"list": "history", "model": name, "alias": alias or ""}
        before, limit = decode_token(page_token, query, int), self._page_size(page_size)
        with self._read() as conn:
            model = q.model_id(conn, name)
            statement = select(t.alias_events).where(t.alias_events.c.model_id == model)
            if alias:
                statement = statement.where(t.alias_events.c.alias == alias)
            if before is not None:
                statement = statement.where(t.alias_events.c.id < int(before))
            rows = list(conn.execute(statement.order_by(t.alias_events.c.id.desc()).limit(limit + 1)))
        items = [q.to_event(row, name) for row in rows[:limit]]
        token = encode_token(items[-1].id, query) if len(rows) > limit else None
        return Page[AliasEvent](items=items, next_page_token=token)

    # -- validation verdicts -----------------------------------------------------------------------

    def record_validation(self, name: str, version: int, verdict: NewValidation) -> Validation:
        """Record a ``modelyard validate`` verdict on the version."""
        verdict = NewValidation.model_validate(verdict.model_dump())  # a model_construct()ed one too
        with self._write() as conn:
            row = q.version_row(conn, q.model_id(conn, name), name, version)
            return insert_validation(conn, int(row.id), name, version, verdict, _now())

    def list_validations(self, name: str, version: int, limit: int = 20) -> list[Validation]:
        """The version's verdicts, newest first (at most ``limit``, at most 100)."""
        with self._read() as conn:
            row = q.version_row(conn, q.model_id(conn, name), name, version)
            return latest_validations(conn, int(row.id), name, version, limit)

    # -- usages -----------------------------------------------------------------------------------

    def mark_used(self, name: str, version: int, consumer: str) -> VersionUsage:
        """Record that ``consumer`` (e.g. ``deployment/prod-eu``) uses the version; idempotent."""
        check_consumer(consumer)
        with contextlib.suppress(IntegrityError), self._write() as conn:  # already marked: fine
            model = q.model_id(conn, name)
            row = q.version_row(conn, model, name, version)
            conn.execute(insert(t.version_usages).values(version_id=row.id, consumer=consumer, since=_now()))
        usage = next((u for u in self.list_usages(name, version) if u.consumer == consumer), None)
        if usage is None:  # the version was deleted between the insert attempt and now
            raise NotFound(f"model '{name}' has no version {version}", field="version")
        return usage

    def unmark_used(self, name: str, version: int, consumer: str) -> None:
        """Forget one consumer of the version; forgetting one that is not recorded is not an error."""
        check_consumer(consumer)
        with self._write() as conn:
            model = q.model_id(conn, name)
            row = q.version_row(conn, model, name, version)
            conn.execute(
                delete(t.version_usages).where(
                    and_(t.version_usages.c.version_id == row.id, t.version_usages.c.consumer == consumer)
                )
            )

    def list_usages(self, name: str, version: int) -> list[VersionUsage]:
        with self._read() as conn:
            row = q.version_row(conn, q.model_id(conn, name), name, version)
            rows = conn.execute(
                select(t.version_usages)
                .where(t.version_usages.c.version_id == row.id)
                .order_by(t.version_usages.c.consumer)
            )
            return [VersionUsage(consumer=r.consumer, since=as_utc(r.since)) for r in rows]


def _invalid(exc: DataError) -> InvalidInput:
    """A value the database refused: the caller's fault, so InvalidInput rather than a 500."""
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
    return InvalidInput(f"the registry database refused a value: {reason}")
