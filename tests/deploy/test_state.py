"""DeployStore (the deploy history) on SQLite and on the real PostgreSQL (``database_settings``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from modelyard.control.db import WRITE
from modelyard.deploy import schema as s
from modelyard.deploy.state import ApplyRecord, DeployStore
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.registry import ControlSettings, Registry

FILE = "deployments:\n- project: mail\n  model: spam\n  versions:\n  - version: v1\n    spec: {uri: spam/1}\n"
PLAN = {"actions": [{"project": "mail", "model": "spam", "version": "v1", "action": "ADD", "fields": {}}]}


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[DeployStore]:
    with DeployStore.open(database_settings) as opened:
        yield opened


def raises(kind: type[ModelyardError], field: str | None, action: Callable[[], Any]) -> ModelyardError:
    with pytest.raises(kind) as caught:
        action()
    assert caught.value.field == field, caught.value
    return caught.value


def applied(store: DeployStore, text: str = FILE, *, source: str = "deploy.yaml") -> ApplyRecord:
    record = store.begin(text, user="alice", source=source, plan=PLAN)
    return store.finish(record.id, status="applied")


def test_an_empty_history(store: DeployStore) -> None:
    assert store.current() is None
    assert store.running() is None
    assert store.history() == []
    assert store.recover_running("crashed") is None
    raises(NotFound, "apply", lambda: store.get(1))


def test_begin_records_a_running_apply(store: DeployStore) -> None:
    before = datetime.now(UTC)
    record = store.begin(FILE, user="alice", source="deploy.yaml", plan=PLAN)
    assert (record.status, record.user, record.source, record.file_text) == (
        "running",
        "alice",
        "deploy.yaml",
        FILE,
    )
    assert (record.message, record.plan, record.finished_at) == ("", PLAN, None)
    assert before <= record.created_at <= datetime.now(UTC)
    assert record.created_at.tzinfo is not None
    assert store.get(record.id) == record
    assert store.running() == record
    assert store.current() is None  # running is not the desired state yet


def test_finish_closes_the_apply_and_current_follows_the_newest_success(store: DeployStore) -> None:
    first = applied(store, "first")
    assert (first.status, first.message) == ("applied", "")
    assert first.finished_at is not None
    assert first.finished_at >= first.created_at
    assert store.current() == first
    attempt = store.begin("second", user="bob", source="other.yaml", plan={})
    failed = store.finish(attempt.id, status="failed", message="v2 never got ready", plan={"done": ["v1"]})
    assert (failed.status, failed.message, failed.plan, failed.user) == (
        "failed",
        "v2 never got ready",
        {"done": ["v1"]},
        "bob",
    )
    assert store.current() == first  # a failed apply is not the desired state
    assert store.running() is None
    third = applied(store, "third", source="rollback to #1")
    assert store.current() == third
    assert store.get(first.id) == first
    assert third.plan == PLAN  # finish without a plan keeps begin's


def test_finish_refuses_unknown_finished_and_bad_input(store: DeployStore) -> None:
    done = applied(store)
    raises(Conflict, "apply", lambda: store.finish(done.id, status="failed", message="late"))
    assert store.get(done.id) == done
    raises(NotFound, "apply", lambda: store.finish(done.id + 100, status="applied"))
    record = store.begin(FILE, user="", source="", plan={})
    raises(InvalidInput, "status", lambda: store.finish(record.id, status="running"))
    raises(InvalidInput, "plan", lambda: store.finish(record.id, status="applied", plan={"x": float("nan")}))
    raises(InvalidInput, "message", lambda: store.finish(record.id, status="failed", message="a\x00b"))
    assert store.get(record.id).status == "running"  # nothing changed
    raises(InvalidInput, "apply", lambda: store.finish(0, status="applied"))


def test_one_apply_at_a_time(store: DeployStore) -> None:
    running = store.begin(FILE, user="alice", source="deploy.yaml", plan=PLAN)
    error = raises(Conflict, "apply", lambda: store.begin("other", user="bob", source="b.yaml", plan={}))
    assert f"apply #{running.id}" in str(error)
    assert "alice" in str(error)
    assert [record.id for record in store.history()] == [running.id]  # the loser left no record
    store.finish(running.id, status="failed", message="boom")
    assert store.begin("other", user="bob", source="b.yaml", plan={}).status == "running"


def test_concurrent_begins_have_exactly_one_winner(store: DeployStore) -> None:
    threads = 6
    barrier = threading.Barrier(threads)
    won: list[ApplyRecord] = []
    lost: list[Conflict] = []
    unexpected: list[BaseException] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            won.append(store.begin(f"file {n}", user=f"user{n}", source=f"{n}.yaml", plan={"n": n}))
        except Conflict as exc:
            lost.append(exc)
        except BaseException as exc:
            unexpected.append(exc)

    workers = [threading.Thread(target=attempt, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert unexpected == []
    assert (len(won), len(lost)) == (1, threads - 1)
    assert store.history() == won
    assert store.running() == won[0]


def test_the_database_itself_refuses_a_second_running_apply(store: DeployStore) -> None:
    # The partial unique index, not the store's code, is what decides: a raw insert fails too...
    store.begin(FILE, user="alice", source="deploy.yaml", plan={})
    row = {
        "created_at": datetime.now(UTC),
        "user": "mallory",
        "source": "raw",
        "file_text": "",
        "message": "",
        "plan": {},
    }
    writer = store._engine.execution_options(**{WRITE: True})
    with pytest.raises(IntegrityError), writer.begin() as conn:
        conn.execute(insert(s.applies).values(status="running", **row))
    # ...while any number of finished applies may share a status.
    with writer.begin() as conn:
        conn.execute(insert(s.applies), [{"status": "applied", **row}, {"status": "applied", **row}])
    assert [record.status for record in store.history()] == ["applied", "applied", "running"]


def test_history_is_newest_first_in_keyset_pages(store: DeployStore) -> None:
    ids = [applied(store, f"file {n}", source=f"{n}.yaml").id for n in range(7)]
    assert [record.id for record in store.history()] == ids[::-1]
    pages: list[list[int]] = []
    before: int | None = None
    while page := store.history(limit=3, before=before):
        pages.append([record.id for record in page])
        before = page[-1].id
    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[:1]]
    assert store.history(limit=2, before=ids[2]) == [store.get(ids[1]), store.get(ids[0])]
    assert [record.id for record in store.history(before=2**40)] == ids[::-1]  # beyond any id: all
    for limit in (0, 1001, True, "3"):
        raises(InvalidInput, "limit", lambda limit=limit: store.history(limit=limit))  # type: ignore[misc]
    for before_id in (0, -1, "3"):
        raises(InvalidInput, "before", lambda b=before_id: store.history(before=b))  # type: ignore[misc]


def test_recover_running_fails_the_apply_a_crash_left(store: DeployStore) -> None:
    done = applied(store)
    stuck = store.begin("stuck", user="alice", source="deploy.yaml", plan=PLAN)
    recovered = store.recover_running("the control plane restarted during this apply")
    assert recovered is not None
    assert (recovered.id, recovered.status, recovered.plan) == (stuck.id, "failed", PLAN)
    assert recovered.message == "the control plane restarted during this apply"
    assert recovered.finished_at is not None
    assert store.recover_running("again") is None
    assert store.current() == done
    assert store.begin("next", user="alice", source="deploy.yaml", plan={}).status == "running"


def test_begin_checks_its_input(store: DeployStore) -> None:
    raises(InvalidInput, "user", lambda: store.begin(FILE, user="u" * 201, source="", plan={}))
    raises(InvalidInput, "source", lambda: store.begin(FILE, user="", source="s" * 501, plan={}))
    raises(InvalidInput, "file_text", lambda: store.begin("a\x00", user="", source="", plan={}))
    raises(InvalidInput, "file_text", lambda: store.begin(b"x", user="", source="", plan={}))  # type: ignore[arg-type]
    raises(InvalidInput, "plan", lambda: store.begin(FILE, user="", source="", plan=[]))  # type: ignore[arg-type]
    raises(InvalidInput, "plan", lambda: store.begin(FILE, user="", source="", plan={"x": object()}))
    assert store.history() == []  # nothing was recorded
    # The plan reads back as the JSON data it is stored as; unusual text survives both databases.
    text = "é ✓ \U0001f600\n" * 1000
    plan: dict[Any, Any] = {"t": (1, 2), "n": None, 3: "\x00"}
    record = store.begin(text, user="ü" * 200, source="s" * 500, plan=plan)
    assert record.plan == {"t": [1, 2], "n": None, "3": "\x00"}
    assert store.get(record.id) == record
    assert record.file_text == text


def test_to_dict_is_json_ready(store: DeployStore) -> None:
    record = applied(store)
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert (data["id"], data["file_text"], data["status"]) == (record.id, FILE, "applied")
    assert datetime.fromisoformat(data["created_at"]) == record.created_at
    assert datetime.fromisoformat(data["finished_at"]) == record.finished_at
    assert "file_text" not in record.to_dict(file_text=False)
    data["plan"]["actions"].clear()
    assert record.plan == PLAN  # a copy
    running = store.begin(FILE, user="", source="", plan={})
    assert running.to_dict()["finished_at"] is None


def test_a_store_can_share_the_registrys_engine(database_settings: ControlSettings) -> None:
    with Registry(database_settings) as registry:
        shared = DeployStore(registry.engine)
        record = applied(shared)
        shared.close()  # does not dispose the registry's engine
        assert DeployStore(registry.engine).current() == record
