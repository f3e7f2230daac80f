"""RouteStore on SQLite and on the real PostgreSQL (``database_settings`` in tests/conftest.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.registry import ControlSettings, Registry
from modelyard.routing import schema as s
from modelyard.routing.store import RouteStore
from modelyard.routing.table import ModelRoute, VersionRoute

A, B, C = "http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://10.0.0.3:8080"


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[RouteStore]:
    with RouteStore.open(database_settings) as opened:
        yield opened


def weights(route: ModelRoute) -> dict[str, int]:
    return {version.version: version.weight for version in route.versions}


def raises(kind: type[ModelyardError], field: str, action: Callable[[], Any]) -> ModelyardError:
    with pytest.raises(kind) as caught:
        action()
    assert caught.value.field == field, caught.value
    return caught.value


def test_a_new_table_is_empty_at_revision_0(store: RouteStore) -> None:
    assert store.revision() == 0
    assert store.list() == []
    table = store.load()
    assert (table.revision, dict(table.routes)) == (0, {})


def test_every_write_bumps_the_revision_and_reads_do_not(store: RouteStore) -> None:
    writes: list[Callable[[], object]] = [
        lambda: store.set_weights("mail", "spam", {"v1": 90, "v2": 10}),
        lambda: store.set_weights("mail", "spam", {"v1": 80}, replace=False),
        lambda: store.set_mirror("mail", "spam", "v3", 0.5),
        lambda: store.clear_mirror("mail", "spam", "v3"),
        lambda: store.add_replica("mail", "spam", "v1", A),
        lambda: store.set_replicas("mail", "spam", "v1", [A, B]),
        lambda: store.remove_replica("mail", "spam", "v1", B),
        lambda: store.set_options("mail", "spam", timeout_s=5),
        lambda: store.remove_version("mail", "spam", "v3"),
        lambda: store.delete("mail", "spam"),
    ]
    for expected, write in enumerate(writes, start=1):
        write()
        assert store.revision() == expected
        store.list()
        store.load()
        if expected < len(writes):
            store.get("mail", "spam")
        assert store.revision() == expected  # reads change nothing


def test_a_failed_write_does_not_bump_the_revision(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 1})
    with pytest.raises(InvalidInput):
        store.set_weights("mail", "spam", {"v1": 0})  # would leave no weight above 0
    with pytest.raises(NotFound):
        store.clear_mirror("mail", "spam", "v9")
    store.set_replicas("mail", "spam", "v1", [A])
    with pytest.raises(Conflict):
        store.add_replica("mail", "spam", "v1", A)
    assert store.revision() == 2


def test_load_is_a_snapshot_of_every_route(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 90, "v2": 10})
    store.set_replicas("mail", "spam", "v1", [B, A])
    store.set_weights("search", "rank", {"v10": 1, "v2": 3})
    table = store.load()
    assert table.revision == store.revision() == 3
    assert set(table.routes) == {("mail", "spam"), ("search", "rank")}
    assert table.projects() == {"mail", "search"}
    assert table.routes["mail", "spam"] == ModelRoute(
        project="mail",
        model="spam",
        versions=(VersionRoute("v1", weight=90, replicas=(A, B)), VersionRoute("v2", weight=10)),
    )
    assert [v.version for v in table.routes["search", "rank"].versions] == ["v2", "v10"]  # natural order
    assert store.list() == [table.routes["mail", "spam"], table.routes["search", "rank"]]


def test_weights_replace_or_keep_the_others(store: RouteStore) -> None:
    assert weights(store.set_weights("mail", "spam", {"v1": 90, "v2": 10})) == {"v1": 90, "v2": 10}
    # Replacing: versions not named drop to 0 but stay (reachable when pinned), with their replicas.
    store.add_replica("mail", "spam", "v1", A)
    route = store.set_weights("mail", "spam", {"v3": 100})
    assert weights(route) == {"v1": 0, "v2": 0, "v3": 100}
    assert route.version("v1") == VersionRoute("v1", weight=0, replicas=(A,))
    # Keeping the others: only the named versions change.
    assert weights(store.set_weights("mail", "spam", {"v1": 50}, replace=False)) == {
        "v1": 50,
        "v2": 0,
        "v3": 100,
    }
    # Zero for a named version is fine while another keeps a weight.
    assert weights(store.set_weights("mail", "spam", {"v3": 0}, replace=False)) == {
        "v1": 50,
        "v2": 0,
        "v3": 0,
    }
    error = raises(InvalidInput, "weights", lambda: store.set_weights("mail", "spam", {"v1": 0}))
    assert "above 0" in error.message
    raises(InvalidInput, "weights", lambda: store.set_weights("mail", "spam", {"v1": 0}, replace=False))
    raises(InvalidInput, "weights", lambda: store.set_weights("mail", "new", {"v1": 0}))
    with pytest.raises(NotFound):
        store.get("mail", "new")  # the refused write created nothing


def test_validation_errors_name_the_field(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 1})
    cases: list[tuple[str, Callable[[], object]]] = [
        ("project", lambda: store.get("Mail!", "spam")),
        ("model", lambda: store.set_weights("mail", "../x", {"v1": 1})),
        ("model", lambda: store.get("mail", "spam\n")),
        ("version", lambda: store.set_mirror("mail", "spam", "v 1")),
        ("weights", lambda: store.set_weights("mail", "spam", {})),
        ("weights", lambda: store.set_weights("mail", "spam", {"-v": 1})),
        ("weights.v1", lambda: store.set_weights("mail", "spam", {"v1": -1})),
        ("weights.v1", lambda: store.set_weights("mail", "spam", {"v1": True})),
        ("weights.v1", lambda: store.set_weights("mail", "spam", {"v1": 1.5})),  # type: ignore[dict-item]
        ("weights.v1", lambda: store.set_weights("mail", "spam", {"v1": 10**12})),
        ("fraction", lambda: store.set_mirror("mail", "spam", "v2", 0)),
        ("fraction", lambda: store.set_mirror("mail", "spam", "v2", 1.5)),
        ("fraction", lambda: store.set_mirror("mail", "spam", "v2", math.nan)),
        ("url", lambda: store.add_replica("mail", "spam", "v1", "https://a:1")),
        ("url", lambda: store.add_replica("mail", "spam", "v1", "http://a:1/path")),
        ("url", lambda: store.add_replica("mail", "spam", "v1", "http://a:70000")),
        ("url", lambda: store.add_replica("mail", "spam", "v1", f"http://{'a' * 300}:1")),
        ("urls.1", lambda: store.set_replicas("mail", "spam", "v1", [A, "nope"])),
        ("urls", lambda: store.set_replicas("mail", "spam", "v1", A)),
        ("timeout_s", lambda: store.set_options("mail", "spam", timeout_s=0)),
        ("timeout_s", lambda: store.set_options("mail", "spam", timeout_s=math.inf)),
        ("log_payload", lambda: store.set_options("mail", "spam", log_payload="everything")),
        ("log_sample", lambda: store.set_options("mail", "spam", log_sample=1.01)),
        ("target", lambda: store.set_options("mail", "spam", target={"!": "x"})),
        ("target.v1", lambda: store.set_options("mail", "spam", target={"v1": "bad name"})),
    ]
    for field, action in cases:
        raises(InvalidInput, field, action)
    assert store.revision() == 1


def test_not_found_names_project_model_version_or_url(store: RouteStore) -> None:
    error = raises(NotFound, "model", lambda: store.get("mail", "spam"))
    assert "mail/spam" in error.message
    for action in (
        lambda: store.set_mirror("mail", "spam", "v1"),
        lambda: store.add_replica("mail", "spam", "v1", A),
        lambda: store.set_replicas("mail", "spam", "v1", [A]),
        lambda: store.set_options("mail", "spam", timeout_s=1),
        lambda: store.remove_version("mail", "spam", "v1"),
        lambda: store.delete("mail", "spam"),
    ):
        assert "mail/spam" in raises(NotFound, "model", action).message
    store.set_weights("mail", "spam", {"v1": 1})
    for action in (
        lambda: store.clear_mirror("mail", "spam", "v9"),
        lambda: store.remove_replica("mail", "spam", "v9", A),
        lambda: store.remove_version("mail", "spam", "v9"),
        lambda: store.set_options("mail", "spam", target={"v9": "spam"}),
    ):
        assert "v9 of mail/spam" in raises(NotFound, "version", action).message
    assert A in raises(NotFound, "url", lambda: store.remove_replica("mail", "spam", "v1", A)).message


def test_mirror(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 100})
    route = store.set_mirror("mail", "spam", "v3", 0.1)  # a new version: weight 0, mirrored
    assert route.version("v3") == VersionRoute("v3", weight=0, mirror=True, mirror_fraction=0.1)
    assert store.set_mirror("mail", "spam", "v3").version("v3") == VersionRoute("v3", mirror=True)
    assert store.clear_mirror("mail", "spam", "v3").version("v3") == VersionRoute("v3")
    store.set_weights("mail", "spam", {"v3": 5}, replace=False)
    assert store.set_mirror("mail", "spam", "v3", 0.5).version("v3") == VersionRoute(
        "v3", weight=5, mirror=True, mirror_fraction=0.5
    )  # mirroring keeps the weight


def test_replicas(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 100})
    assert store.add_replica("mail", "spam", "v1", B).version("v1") == VersionRoute("v1", 100, replicas=(B,))
    assert store.add_replica("mail", "spam", "v1", A + "/").version("v1").replicas == (A, B)  # type: ignore[union-attr]
    raises(Conflict, "url", lambda: store.add_replica("mail", "spam", "v1", A))
    assert store.remove_replica("mail", "spam", "v1", B).version("v1").replicas == (A,)  # type: ignore[union-attr]
    route = store.set_replicas("mail", "spam", "v2", [A, C, A])  # a new version; duplicates dropped
    assert route.version("v2") == VersionRoute("v2", weight=0, replicas=(C, A))  # sorted by URL
    assert store.set_replicas("mail", "spam", "v2", []).version("v2") == VersionRoute("v2")
    assert store.get("mail", "spam").version("v1") == VersionRoute("v1", 100, replicas=(A,))


def test_options(store: RouteStore) -> None:
    route = store.set_weights("mail", "spam", {"v1": 1, "v2": 1})
    assert (route.timeout_s, route.log_payload, route.log_sample) == (30.0, "hash", 1.0)  # defaults
    route = store.set_options("mail", "spam", timeout_s=2.5, log_payload="full", log_sample=0)
    assert (route.timeout_s, route.log_payload, route.log_sample) == (2.5, "full", 0.0)
    route = store.set_options("mail", "spam", log_sample=0.25, target={"v2": "spam-filter"})
    assert (route.timeout_s, route.log_payload, route.log_sample) == (2.5, "full", 0.25)  # others kept
    assert [v.target for v in route.versions] == ["", "spam-filter"]
    assert store.set_options("mail", "spam", target={"v2": ""}).version("v2") == VersionRoute("v2", 1)


def test_remove_version_and_delete(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 90, "v2": 10})
    store.set_replicas("mail", "spam", "v2", [A, B])
    store.set_weights("mail", "ham", {"v1": 1})
    route = store.remove_version("mail", "spam", "v2")
    assert [v.version for v in route.versions] == ["v1"]
    store.set_replicas("mail", "spam", "v2", [])  # back, without its old replicas
    assert store.get("mail", "spam").version("v2") == VersionRoute("v2")
    store.add_replica("mail", "spam", "v2", C)
    store.delete("mail", "spam")
    raises(NotFound, "model", lambda: store.get("mail", "spam"))
    assert [(r.project, r.model) for r in store.list()] == [("mail", "ham")]
    # Gone with all its rows: a new route of that name starts clean.
    assert store.set_weights("mail", "spam", {"v9": 1}).versions == (VersionRoute("v9", 1),)


def test_the_state_row_is_recreated_when_it_is_missing(store: RouteStore) -> None:
    store.set_weights("mail", "spam", {"v1": 1})
    with store._engine.begin() as conn:
        conn.execute(delete(s.state))
    assert store.revision() == 0
    store.set_weights("mail", "spam", {"v1": 2})
    assert store.revision() == 1


@pytest.mark.parametrize("state_row", ["present", "missing"])
def test_concurrent_writers_never_lose_a_revision_bump(
    database_settings: ControlSettings, state_row: str
) -> None:
    writes_each, writers = 15, 2
    stores = [RouteStore.open(database_settings) for _ in range(writers)]
    try:
        stores[0].set_weights("mail", "spam", {"v1": 1})
        if state_row == "missing":  # both writers race to put the state row back first
            with stores[0]._engine.begin() as conn:
                conn.execute(delete(s.state))
        start = stores[0].revision()
        barrier = threading.Barrier(writers)
        errors: list[BaseException] = []

        def write(index: int) -> None:
            try:
                barrier.wait(timeout=30)
                for n in range(writes_each):
                    stores[index].add_replica("mail", "spam", "v1", f"http://10.0.{index}.{n}:80")
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert stores[1].revision() == start + writers * writes_each
        assert len(stores[1].get("mail", "spam").versions[0].replicas) == writers * writes_each
    finally:
        for opened in stores:
            opened.close()


def test_a_store_on_the_registry_engine_shares_its_database(database_settings: ControlSettings) -> None:
    with Registry(database_settings) as registry:
        shared = RouteStore(registry.engine)
        shared.set_weights("mail", "spam", {"v1": 1})
        shared.close()  # not its engine: the registry keeps working
        assert registry.list_models().items == []
        with RouteStore.open(database_settings) as other:
            assert other.get("mail", "spam").versions == (VersionRoute("v1", 1),)
