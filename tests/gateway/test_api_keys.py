"""Per-project API keys: the store (SQLite and PostgreSQL), the REST API, the CLI, the check."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from modelyard.access.store import TokenStore
from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ModelyardError,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from modelyard.gateway.keys import KeyCheck
from modelyard.gateway.messages import GatewayRequest
from modelyard.registry import ControlSettings, Registry
from modelyard.routing import schema as s
from modelyard.routing.client import RouteClient
from modelyard.routing.keys import hash_key
from modelyard.routing.store import RouteStore
from modelyard.routing.table import KeyGrant, RoutingTable
from modelyard.web.access import Role
from modelyard.web.errors import error_headers, status_for
from tests.support import serve_in_thread

KEY_PATTERN = r"mdyk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}"


@pytest.fixture
def store(database_settings: ControlSettings) -> Iterator[RouteStore]:
    with RouteStore.open(database_settings) as opened:
        yield opened


# -- the store --------------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_only_its_hash_is_stored(store: RouteStore) -> None:
    record, key = store.create_key("mail", "web", 50, 100, created_by="alice")
    assert re.fullmatch(KEY_PATTERN, key)
    assert key.startswith(f"mdyk_{record.id}_")
    assert (record.project, record.name, record.rate_per_s, record.burst) == ("mail", "web", 50.0, 100)
    assert (record.created_by, record.revoked_at) == ("alice", None)
    with store._engine.connect() as conn:
        rows = conn.execute(select(s.api_keys)).all()
    assert [row.key_hash for row in rows] == [hash_key(key)]
    assert all(key not in str(tuple(row)) for row in rows)  # the key itself is nowhere
    assert store.list_keys() == [record]


def test_key_writes_move_the_revision_and_the_table_carries_the_hashes(store: RouteStore) -> None:
    assert store.load().keys == {}
    start = store.revision()
    limited, key = store.create_key("mail", "web", 10)
    _, open_key = store.create_key("ads", "batch")
    assert store.revision() == start + 2
    assert store.load().keys == {
        hash_key(key): KeyGrant("mail", 10.0, 10),  # burst: one second's worth
        hash_key(open_key): KeyGrant("ads", None, 0),  # no rate: no limit
    }
    assert store.load().keyed == {"mail", "ads"}
    revoked = store.revoke_key(limited.id)
    assert revoked.revoked_at is not None
    assert store.revision() == start + 3
    assert set(store.load().keys) == {hash_key(open_key)}
    assert store.load().keyed == {"mail", "ads"}  # its last key revoked, "mail" stays closed
    assert store.revoke_key(limited.id).revoked_at == revoked.revoked_at  # again: unchanged


def test_forgetting_a_projects_revoked_keys_opens_it(store: RouteStore) -> None:
    first, _ = store.create_key("mail", "a")
    second, _ = store.create_key("mail", "b")
    other, _ = store.create_key("ads", "c")
    store.revoke_key(first.id)
    with pytest.raises(Conflict) as caught:  # "b" is active: nothing forgotten
        store.forget_keys("mail")
    assert caught.value.field == "project"
    assert len(store.list_keys("mail", include_revoked=True)) == 2
    store.revoke_key(second.id)
    before = store.revision()
    assert store.forget_keys("mail") == 2
    assert store.revision() == before + 1
    assert store.load().keyed == {"ads"}
    assert store.list_keys(include_revoked=True) == [other]
    assert store.forget_keys("never-keyed") == 0
    with pytest.raises(InvalidInput):
        store.forget_keys("bad/name")


def test_listing_by_project_and_with_the_revoked_ones(store: RouteStore) -> None:
    a, _ = store.create_key("mail", "a")
    b, _ = store.create_key("mail", "b", 1.5, 3)
    c, _ = store.create_key("ads", "c")
    store.revoke_key(a.id)
    assert [k.id for k in store.list_keys()] == [c.id, b.id]  # by project, then age
    assert [k.id for k in store.list_keys("mail")] == [b.id]
    assert [k.id for k in store.list_keys("mail", include_revoked=True)] == [a.id, b.id]
    assert store.list_keys("nobody") == []


def test_a_name_is_unique_among_a_projects_active_keys(store: RouteStore) -> None:
    first, _ = store.create_key("mail", "web")
    with pytest.raises(Conflict) as caught:
        store.create_key("mail", "web")
    assert caught.value.field == "name"
    store.create_key("ads", "web")  # another project: fine
    store.revoke_key(first.id)
    store.create_key("mail", "web")  # the old one is revoked: fine


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("bad/project", "web"), "project"),
        (("mail", "no spaces"), "name"),
        (("mail", "web\n"), "name"),
        (("mail", "web", 0), "rate_per_s"),
        (("mail", "web", -1), "rate_per_s"),
        (("mail", "web", math.nan), "rate_per_s"),
        (("mail", "web", math.inf), "rate_per_s"),
        (("mail", "web", True), "rate_per_s"),
        (("mail", "web", 5, 0), "burst"),
        (("mail", "web", 5, 2.5), "burst"),
        (("mail", "web", None, 5), "burst"),  # a burst without a rate means nothing
    ],
)
def test_bad_keys_are_refused_naming_the_field(store: RouteStore, args: tuple[Any, ...], field: str) -> None:
    before = store.revision()
    with pytest.raises(InvalidInput) as caught:
        store.create_key(*args)
    assert caught.value.field == field
    assert store.revision() == before
    assert store.list_keys() == []


def test_revoking_an_unknown_key_is_a_404(store: RouteStore) -> None:
    with pytest.raises(NotFound) as caught:
        store.revoke_key("0123456789ab")
    assert caught.value.field == "id"


# -- the REST API -----------------------------------------------------------------------------------


@pytest.fixture
def control(tmp_path: Path) -> ControlSettings:
    return ControlSettings(home=tmp_path / "home")


def test_the_rest_api_creates_lists_and_revokes(control: ControlSettings) -> None:
    with TestClient(build_control_app(control), base_url="http://127.0.0.1") as client:
        made = client.post(
            "/api/v1/keys", json={"project": "mail", "name": "web", "rate_per_s": 5, "created_by": "bob"}
        )
        assert made.status_code == 201, made.text
        body = made.json()
        assert re.fullmatch(KEY_PATTERN, body["key"])
        assert (body["project"], body["rate_per_s"], body["burst"]) == ("mail", 5.0, 5)
        assert body["created_by"] == "bob"  # access control off: what the caller claims
        listed = client.get("/api/v1/keys", params={"project": "mail"}).json()
        assert [item["id"] for item in listed] == [body["id"]]
        assert "key" not in listed[0]
        assert body["key"] not in client.get("/api/v1/keys").text
        revoked = client.delete(f"/api/v1/keys/{body['id']}").json()
        assert revoked["revoked_at"] is not None
        assert client.get("/api/v1/keys").json() == []
        assert len(client.get("/api/v1/keys", params={"include_revoked": "true"}).json()) == 1
        assert client.delete("/api/v1/keys", params={"project": "mail"}).json() == {"forgotten": 1}
        unnamed = client.delete("/api/v1/keys")
        assert (unnamed.status_code, unnamed.json()["field"]) == (400, "project")
        for bad, field in (
            ({"project": "mail", "name": "w", "burst": 3}, "burst"),
            ({"name": "w"}, "project"),
        ):
            refused = client.post("/api/v1/keys", json=bad)
            assert (refused.status_code, refused.json().get("field")) == (400, field), refused.text
        missing = client.delete("/api/v1/keys/0123456789ab")
        assert (missing.status_code, missing.json()["field"]) == (404, "id")


def test_only_admins_manage_keys_and_the_creator_is_the_token(control: ControlSettings) -> None:
    with Registry(control) as registry:
        tokens = TokenStore(registry.engine)
        _, admin = tokens.create("root", Role.ADMIN, created_by="test")
        _, deployer = tokens.create("ci", Role.DEPLOYER, created_by="test")
        with TestClient(build_control_app(control, registry), base_url="http://127.0.0.1") as client:
            body = {"project": "mail", "name": "web", "created_by": "someone else"}
            assert client.post("/api/v1/keys", json=body).status_code == 401
            as_deployer = {"authorization": f"Bearer {deployer}"}
            for method, path in (
                ("POST", "/api/v1/keys"),
                ("GET", "/api/v1/keys"),
                ("DELETE", "/api/v1/keys/x"),
                ("DELETE", "/api/v1/keys?project=mail"),
            ):
                refused = client.request(method, path, json=body, headers=as_deployer)
                assert (refused.status_code, refused.json()["kind"]) == (403, "forbidden"), (method, path)
            made = client.post("/api/v1/keys", json=body, headers={"authorization": f"Bearer {admin}"})
            assert made.status_code == 201
            assert made.json()["created_by"] == "root"
        assert RouteStore(registry.engine).list_keys()[0].name == "web"


# -- the CLI, on the local database and against a control plane ------------------------------------


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, ["key", *args], env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def key_walkthrough(env: dict[str, str]) -> None:
    made = cli(env, "create", "--project", "mail", "--name", "web", "--rate", "50", "--burst", "100")
    key = made.stdout.strip()
    assert re.fullmatch(KEY_PATTERN, key)  # stdout: the key alone
    assert "shown only now" in made.stderr
    assert "50/s, burst 100" in made.stderr
    cli(env, "create", "--project", "ads", "--name", "batch")
    listed = cli(env, "list").stdout
    assert "mail" in listed
    assert "web" in listed
    assert "50/s, burst 100" in listed
    assert "no rate limit" in listed
    assert key not in listed
    shown = json.loads(cli(env, "list", "--project", "mail", "--json").stdout)
    assert [(k["name"], k["rate_per_s"], k["burst"]) for k in shown] == [("web", 50.0, 100)]
    assert f"revoked {shown[0]['id']} 'web' of project mail" in cli(env, "revoke", shown[0]["id"]).stdout
    assert "web" not in cli(env, "list", "--project", "mail").stdout
    assert "revoked" in cli(env, "list", "--all").stdout
    refused = cli(env, "forget", "--project", "ads", code=2)  # "batch" is active
    assert "has 1 active API key(s): revoke them first" in refused.stderr
    assert "forgot 1 revoked key(s) of project mail" in cli(env, "forget", "--project", "mail").stdout
    assert "revoked" not in cli(env, "list", "--all", "--project", "mail").stdout
    refused = cli(env, "create", "--project", "mail", "--name", "x", "--rate", "0", code=2)
    assert "rate_per_s must be a number above 0" in refused.stderr
    assert "no API key with id 'nope'" in cli(env, "revoke", "nope", code=2).stderr


def test_the_cli_on_the_local_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    key_walkthrough(cli_env)
    with RouteStore.open(ControlSettings(home=tmp_path / "home")) as local:
        created_by = {k.name: k.created_by for k in local.list_keys(include_revoked=True)}
    assert created_by["batch"].endswith("(local)")


def test_the_cli_against_a_control_plane(cli_env: dict[str, str], tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        key_walkthrough({**cli_env, "MODELYARD_CONTROL_URL": f"http://{address}"})
        with RouteClient(f"http://{address}") as client:  # the RoutesAPI over HTTP, directly
            record, _key = client.create_key("mail", "direct", 2.5, 4, created_by="carol")
            assert (record.rate_per_s, record.burst, record.created_by) == (2.5, 4, "carol")
            assert client.list_keys("mail") == [record]
            assert client.revoke_key(record.id).revoked_at is not None
            assert client.forget_keys("mail") == 1
            with pytest.raises(InvalidInput):
                client.create_key("mail", "bad", None, 3)
        assert not (tmp_path / "home").exists()  # nothing written to the local database


# -- the check, unit by unit ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(project: str, *headers: tuple[bytes, bytes]) -> GatewayRequest:
    return GatewayRequest("v2", project, "m", None, "POST", list(headers), b"", "id")


def bearer(key: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {key}".encode())


def table(revision: int = 1, keyed: frozenset[str] = frozenset(), **grants: KeyGrant) -> RoutingTable:
    return RoutingTable(revision, {}, {hash_key(key): grant for key, grant in grants.items()}, keyed)


def refusal(check: KeyCheck, req: GatewayRequest, keys: RoutingTable) -> tuple[int, str] | None:
    error = check.check(req, keys)
    return None if error is None else (status_for(error), error.kind.value)


def test_the_check_refuses_what_it_must_and_strips_the_key() -> None:
    check, keys = KeyCheck(), table(k1=KeyGrant("mail"), k2=KeyGrant("ads"))
    assert refusal(check, request("open", (b"x", b"1")), keys) is None  # no keys: open, untouched
    assert refusal(check, request("mail"), keys) == (401, "unauthenticated")
    assert refusal(check, request("mail", bearer("nope")), keys) == (401, "unauthenticated")
    assert refusal(check, request("mail", (b"authorization", b"Basic azE6")), keys) == (
        401,
        "unauthenticated",
    )
    assert refusal(check, request("mail", bearer("k2")), keys) == (403, "forbidden")
    allowed = request("mail", (b"accept", b"*/*"), (b"authorization", b"bearer  k1 "), bearer("k2"))
    assert refusal(check, allowed, keys) is None  # the scheme in any case; the first header counts
    assert allowed.headers == [(b"accept", b"*/*")]  # no Authorization header goes on
    untouched = request("open", bearer("k1"))
    assert refusal(check, untouched, keys) is None
    assert untouched.headers == [bearer("k1")]


def test_a_keys_bucket_allows_its_burst_then_its_rate_with_retry_after() -> None:
    clock = Clock()
    check, keys = KeyCheck(clock=clock), table(k=KeyGrant("mail", rate_per_s=2, burst=3))
    assert [refusal(check, request("mail", bearer("k")), keys) for _ in range(3)] == [None] * 3
    error = check.check(request("mail", bearer("k")), keys)
    assert isinstance(error, RateLimited)
    assert status_for(error) == 429
    assert error.retry_after == pytest.approx(0.5)
    assert error_headers(error) == {"retry-after": "1"}  # rounded up, never 0
    clock.now += 0.5
    assert refusal(check, request("mail", bearer("k")), keys) is None
    assert refusal(check, request("mail", bearer("k")), keys) == (429, "rate_limited")
    clock.now += 60  # a long pause refills no more than the burst
    assert [refusal(check, request("mail", bearer("k")), keys) for _ in range(4)][-1] == (429, "rate_limited")


def test_workers_share_a_keys_rate_and_a_new_table_keeps_unchanged_buckets() -> None:
    clock = Clock()
    check = KeyCheck(workers=4, clock=clock)
    keys = table(k=KeyGrant("mail", rate_per_s=40, burst=8), other=KeyGrant("ads", 1, 1))
    results = [check.check(request("mail", bearer("k")), keys) for _ in range(3)]
    assert results[:2] == [None, None]
    assert isinstance(results[2], RateLimited)
    assert results[2].retry_after == pytest.approx(0.1)  # 40/s over 4 workers: one every 0.1 s
    again = table(2, k=KeyGrant("mail", rate_per_s=40, burst=8))  # another key went: k keeps its bucket
    assert isinstance(check.check(request("mail", bearer("k")), again), RateLimited)
    raised = table(3, k=KeyGrant("mail", rate_per_s=400, burst=80))  # new limits: a fresh bucket
    assert check.check(request("mail", bearer("k")), raised) is None
    assert refusal(check, request("ads", bearer("other")), raised) is None  # "ads" is forgotten: open
    revoked = table(4, frozenset({"ads"}))  # "ads" has revoked keys only: still closed
    assert refusal(check, request("ads", bearer("other")), revoked) == (401, "unauthenticated")


@pytest.mark.parametrize("error", [Unauthenticated("x"), Forbidden("x"), RateLimited("x", 2.2)])
def test_the_refusals_go_through_the_one_status_table(error: ModelyardError) -> None:
    assert status_for(error) in (401, 403, 429)
    if isinstance(error, RateLimited):
        assert error_headers(error) == {"retry-after": "3"}
