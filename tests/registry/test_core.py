"""The Registry core on SQLite and PostgreSQL: versions, refs, aliases, history, paging, deletion."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import ControlSettings, ModelVersion, NewVersion, Registry
from tests.registry.conftest import artifact_files


def add(registry: Registry, name: str, data: bytes, **spec: object) -> ModelVersion:
    stored = registry.upload([data])
    return registry.register(name, stored.sha256, NewVersion.model_validate(spec))


def test_versions_are_numbered_and_keep_their_metadata(registry: Registry) -> None:
    first = registry.register(
        "iris",
        registry.upload([b"one"]).sha256,
        NewVersion(
            filename="model.onnx",
            description="baseline",
            user="ana",
            source_run="run-17",
            metrics={"accuracy": 0.93},
            params={"depth": "4"},
            labels={"team": "ml"},
        ),
    )
    second = add(registry, "iris", b"two")
    assert (first.version, second.version) == (1, 2)
    shown = registry.get_version("iris", 1)
    assert shown == first
    assert (shown.metrics, shown.params, shown.labels) == ({"accuracy": 0.93}, {"depth": "4"}, {"team": "ml"})
    assert (shown.user, shown.source_run, shown.filename, shown.size) == ("ana", "run-17", "model.onnx", 3)
    assert shown.created_at.tzinfo is not None
    model = registry.get_model("iris")
    assert model.latest_version == 2


def test_an_explicit_version_that_exists_is_a_conflict(registry: Registry) -> None:
    add(registry, "iris", b"a", version=7)
    with pytest.raises(Conflict, match="already has version 7"):
        add(registry, "iris", b"b", version=7)
    assert add(registry, "iris", b"c").version == 8  # auto numbering continues after the highest


def test_refs_resolve_to_versions(registry: Registry) -> None:
    for data in (b"1", b"2", b"3"):
        add(registry, "iris", data)
    registry.set_alias("iris", "production", 2, user="ops")
    assert registry.resolve("iris").version == 3
    assert registry.resolve("iris/1").version == 1
    assert registry.resolve("iris@production").version == 2
    assert registry.resolve("iris@production").aliases == ["production"]
    with pytest.raises(NotFound, match="no alias 'staging'"):
        registry.resolve("iris@staging")
    with pytest.raises(NotFound, match="no version 9"):
        registry.resolve("iris/9")
    with pytest.raises(NotFound, match="model 'nope'"):
        registry.resolve("nope")


def test_aliases_move_and_every_move_is_in_the_history(registry: Registry) -> None:
    for data in (b"1", b"2", b"3"):
        add(registry, "iris", data)
    created = registry.set_alias("iris", "production", 1, user="ana")
    moved = registry.set_alias("iris", "production", 3, user="bob", expected_revision=created.revision)
    assert (created.revision, moved.revision, moved.version, moved.updated_by) == (1, 2, 3, "bob")
    with pytest.raises(Conflict, match="revision 2, not 1"):
        registry.set_alias("iris", "production", 2, expected_revision=1)
    registry.set_alias("iris", "staging", 2, expected_revision=0)
    registry.delete_alias("iris", "staging", user="cy")
    events = registry.alias_history("iris").items
    assert [(e.alias, e.from_version, e.to_version, e.user) for e in events] == [
        ("staging", 2, None, "cy"),
        ("staging", None, 2, ""),
        ("production", 1, 3, "bob"),
        ("production", None, 1, "ana"),
    ]
    assert [e.to_version for e in registry.alias_history("iris", alias="production").items] == [3, 1]
    assert registry.get_model("iris").aliases == {"production": 3}
    with pytest.raises(NotFound):
        registry.set_alias("iris", "production", 9)
    with pytest.raises(InvalidInput):
        registry.set_alias("iris", "Prod", 1)


def test_listing_pages_are_stable_while_versions_are_added(registry: Registry) -> None:
    for index in range(7):
        add(registry, "iris", f"v{index}".encode(), description=f"run {index}")
    first = registry.list_versions("iris", page_size=3)
    assert [v.version for v in first.items] == [7, 6, 5]
    add(registry, "iris", b"late arrival")  # inserted between pages: must not shift the next page
    second = registry.list_versions("iris", page_size=3, page_token=first.next_page_token)
    third = registry.list_versions("iris", page_size=3, page_token=second.next_page_token)
    assert [v.version for v in second.items] == [4, 3, 2]
    assert [v.version for v in third.items] == [1]
    assert third.next_page_token is None
    found = registry.list_versions("iris", search="RUN 3")
    assert [v.version for v in found.items] == [4]
    with pytest.raises(InvalidInput):
        registry.list_versions("iris", page_token=first.next_page_token, search="run")


def test_listing_and_searching_models(registry: Registry) -> None:
    for name in ("alpha", "beta", "gamma", "delta"):
        registry.create_model(name, description=f"the {name} model")
    with pytest.raises(Conflict):
        registry.create_model("beta")
    first = registry.list_models(page_size=2)
    rest = registry.list_models(page_size=2, page_token=first.next_page_token)
    assert [m.name for m in first.items + rest.items] == ["alpha", "beta", "delta", "gamma"]
    assert rest.next_page_token is None
    assert [m.name for m in registry.list_models(search="ELT").items] == ["delta"]
    assert [m.name for m in registry.list_models(search="%").items] == []  # wildcards are literal
    registry.update_model("beta", "better")
    assert registry.get_model("beta").description == "better"


def test_a_version_in_use_is_not_deleted_without_force(registry: Registry) -> None:
    add(registry, "iris", b"1")
    registry.mark_used("iris", 1, "deployment/prod-eu")
    registry.mark_used("iris", 1, "deployment/prod-eu")  # idempotent
    registry.mark_used("iris", 1, "deployment/prod-us")
    assert [u.consumer for u in registry.list_usages("iris", 1)] == [
        "deployment/prod-eu",
        "deployment/prod-us",
    ]
    with pytest.raises(Conflict, match="in use by deployment/prod-eu, deployment/prod-us"):
        registry.delete_version("iris", 1)
    registry.unmark_used("iris", 1, "deployment/prod-us")
    with pytest.raises(Conflict, match=r"in use by deployment/prod-eu;"):
        registry.delete_version("iris", 1)
    registry.delete_version("iris", 1, force=True)
    with pytest.raises(NotFound):
        registry.get_version("iris", 1)


def test_deleting_versions_deletes_bytes_nobody_else_has(
    registry: Registry, settings: ControlSettings
) -> None:
    root = Path(settings.resolved_artifact_url())
    shared = add(registry, "iris", b"same bytes")
    add(registry, "iris", b"same bytes")
    add(registry, "other", b"different")
    registry.set_alias("iris", "production", 1)
    assert len(artifact_files(root)) == 2  # the same bytes are stored once
    registry.delete_version("iris", 1)
    assert registry.store.stat(shared.sha256) is not None  # version 2 still has them
    assert registry.list_aliases("iris") == []  # the alias went with its version...
    assert registry.alias_history("iris").items[0].to_version is None  # ...and the history says so
    registry.delete_version("iris", 2)
    assert registry.store.stat(shared.sha256) is None
    assert len(artifact_files(root)) == 1
    with pytest.raises(Conflict):
        registry.delete_model("other")
    registry.delete_model("iris")
    with pytest.raises(NotFound):
        registry.get_model("iris")


def test_fetch_downloads_verified_and_reuses_an_intact_copy(registry: Registry, tmp_path: Path) -> None:
    version = add(registry, "iris", b"weights" * 100, filename="iris.onnx")
    registry.set_alias("iris", "production", 1)
    path = registry.fetch("iris@production", tmp_path / "dl")
    assert path == tmp_path / "dl" / "iris.onnx"
    assert path.read_bytes() == b"weights" * 100
    stamp = path.stat().st_mtime_ns
    assert registry.fetch("iris/1", tmp_path / "dl").stat().st_mtime_ns == stamp  # reused, not rewritten
    path.write_bytes(b"tampered")
    assert registry.fetch("iris", tmp_path / "dl").read_bytes() == b"weights" * 100  # replaced
    default = registry.fetch("iris")
    assert default.parent == registry.settings.resolved_cache_dir() / version.sha256


def test_push_a_local_file(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "churn.onnx"
    path.write_bytes(b"onnx bytes")
    version = registry.push(path, spec=NewVersion(user="ana"), aliases=["staging"])
    assert (version.name, version.version, version.filename, version.aliases) == (
        "churn",
        1,
        "churn.onnx",
        ["staging"],
    )
    assert version.manifest is None
    with pytest.raises(NotFound, match="upload it first"):
        registry.register("churn", "a" * 64)


def test_reopening_does_not_migrate_twice(settings: ControlSettings) -> None:
    with Registry(settings) as first:
        add(first, "iris", b"1")
    with Registry(settings) as second:
        assert second.resolve("iris").version == 1


class _CollectedMeanwhile:
    """A store whose bytes vanish right after the first look, as if a delete collected them then."""

    def __init__(self, registry: Registry) -> None:
        self.inner = registry.store
        self.looks = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def stat(self, digest: str) -> object:
        found = self.inner.stat(digest)
        self.looks += 1
        if self.looks == 1:
            self.inner.delete(digest)
        return found


def test_registering_bytes_collected_meanwhile_fails_and_creates_nothing(registry: Registry) -> None:
    digest = registry.upload([b"short-lived"]).sha256
    registry.store = _CollectedMeanwhile(registry)  # type: ignore[assignment]
    with pytest.raises(NotFound, match="deleted meanwhile"):
        registry.register("iris", digest)
    with pytest.raises(NotFound, match="model 'iris' not found"):  # no empty model left behind
        registry.get_model("iris")


def test_artifacts_on_any_fsspec_url(settings: ControlSettings, tmp_path: Path) -> None:
    url = f"memory://modelyard-{uuid.uuid4().hex}"
    with Registry(settings.model_copy(update={"artifact_url": url})) as registry:
        version = add(registry, "iris", b"in memory", filename="iris.bin")
        assert version.artifact_uri.startswith("memory://")
        assert version.artifact_uri.endswith(f"{url[9:]}/sha256/{version.sha256[:2]}/{version.sha256}")
        assert registry.fetch("iris", tmp_path / "dl").read_bytes() == b"in memory"
        registry.delete_version("iris", 1)
        assert registry.store.stat(version.sha256) is None


# -- review fixes: refused values, atomic registration ---------------------------------------------


@pytest.mark.parametrize(
    "consumer", ["../../2", "a/../b", "a/./b", "a//b", "a/", "/a", "a?b", "a#b", "a\x00b", "", "x" * 201]
)
def test_invalid_consumers_are_refused_as_invalid_input(registry: Registry, consumer: str) -> None:
    add(registry, "iris", b"one")
    with pytest.raises(InvalidInput) as raised:
        registry.mark_used("iris", 1, consumer)
    assert raised.value.field == "consumer"
    with pytest.raises(InvalidInput):
        registry.unmark_used("iris", 1, consumer)
    assert registry.list_usages("iris", 1) == []
    assert registry.mark_used("iris", 1, "deployment/prod-eu.v2").consumer == "deployment/prod-eu.v2"


@pytest.mark.parametrize(
    "spec",
    [
        {"filename": "a" * 256},
        {"user": "u" * 201},
        {"source_run": "r" * 501},
        {"metrics": {"auc": float("nan")}},
        {"metrics": {"auc": float("inf")}},
        {"version": 2**40},
        {"version": 1_000_000_000},
        {"description": "a\x00b"},
        {"labels": {"team": "m\x00l"}},
        {"params": {"k\x00": "v"}},
        {"filename": ""},
        {"filename": ".."},
        {"filename": "dir/"},
        {"filename": "a\\b.onnx"},
        {"filename": "model.py:Model"},
    ],
)
def test_values_the_database_would_refuse_are_invalid_specs(spec: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="validation error"):  # pydantic's ValidationError
        NewVersion.model_validate(spec)


def test_the_largest_version_is_addressable(registry: Registry) -> None:
    version = add(registry, "iris", b"one", version=999_999_999)
    assert registry.resolve("iris/999999999").version == version.version
    assert registry.set_alias("iris", "prod", 999_999_999).version == 999_999_999


def test_a_refused_registration_leaves_no_empty_model(registry: Registry) -> None:
    stored = registry.upload([b"one"])
    bad = NewVersion().model_copy(update={"user": "u" * 300, "description": "x\x00"})  # unvalidated
    with pytest.raises(InvalidInput):
        registry.register("iris", stored.sha256, bad)
    with pytest.raises(NotFound):
        registry.get_model("iris")
    assert registry.list_models().items == []


def test_database_refusals_become_invalid_input(registry: Registry) -> None:
    add(registry, "iris", b"one")
    with pytest.raises(InvalidInput):
        registry.get_version("iris", 2**40)
    with pytest.raises(InvalidInput):
        registry.set_alias("iris", "prod", 2**70)
    with pytest.raises(InvalidInput):
        registry.set_alias("iris", "prod", 1, user="u" * 201)
    for name in ("ir\x00is", "../iris"):
        with pytest.raises(InvalidInput):
            registry.get_model(name)
        with pytest.raises(InvalidInput):
            registry.list_versions(name)
    with pytest.raises(InvalidInput):
        registry.get_alias("iris", "pr\x00d")
    with pytest.raises(InvalidInput):
        registry.list_models(search="a\x00")
    with pytest.raises(InvalidInput):
        registry.list_versions("iris", search="a\x00")
    with pytest.raises(InvalidInput):
        registry.create_model("other", "a\x00")
    with pytest.raises(InvalidInput):
        registry.alias_history("iris", alias="pr\x00d")


def test_page_tokens_with_a_wrong_key_type_are_invalid(registry: Registry) -> None:
    from modelyard.registry.pages import encode_token

    add(registry, "iris", b"one")
    versions = {"list": "versions", "model": "iris", "search": ""}
    for key in ([1], "abc", {"a": 1}, True, 2**40, -1):
        with pytest.raises(InvalidInput) as raised:
            registry.list_versions("iris", page_token=encode_token(key, versions))
        assert raised.value.field == "page_token"
    with pytest.raises(InvalidInput):
        registry.list_models(page_token=encode_token(5, {"list": "models", "search": ""}))
    with pytest.raises(InvalidInput):
        registry.alias_history(
            "iris", page_token=encode_token("x", {"list": "history", "model": "iris", "alias": ""})
        )


def test_register_with_aliases_is_one_transaction(registry: Registry) -> None:
    add(registry, "iris", b"one")
    registry.set_alias("iris", "prod", 1)
    created = registry.register("iris", registry.upload([b"two"]).sha256, aliases=["staging", "prod", "prod"])
    assert created.aliases == ["prod", "staging"]
    assert registry.get_alias("iris", "prod").revision == 2
    events = [(e.alias, e.from_version, e.to_version) for e in registry.alias_history("iris").items]
    assert events == [("staging", None, 2), ("prod", 1, 2), ("prod", None, 1)]


def test_register_accepts_a_register_request_as_its_spec(registry: Registry) -> None:
    from modelyard.registry.types import RegisterRequest

    stored = registry.upload([b"one"])
    request = RegisterRequest(sha256=stored.sha256, filename="m.onnx", aliases=["prod"])
    assert registry.register("iris", stored.sha256, request).filename == "m.onnx"


def test_push_refuses_a_file_name_the_loader_would_misread(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "model.py:Model"
    path.write_bytes(b"weights")
    with pytest.raises(InvalidInput) as raised:
        registry.push(path, name="iris")
    assert raised.value.field == "filename"
    assert (tmp_path / "artifacts").is_dir()
    assert artifact_files(tmp_path / "artifacts") == []  # the upload was collected
