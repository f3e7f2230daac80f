"""Access control on a live control plane: when a token is needed, what each role may do, who is
recorded, what viewers may not read, and what a browser cannot be tricked into sending."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from modelyard.access.store import TokenStore
from modelyard.control.app import build_control_app
from modelyard.control.server import check_exposure
from modelyard.deploy.client import DeployClient
from modelyard.errors import InvalidInput
from modelyard.registry import ControlSettings, Registry
from modelyard.web.access import Role
from tests.deploy.support import RecordingTarget
from tests.support import serve_in_thread

API = "/api/v1"
DEPLOY = """deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {uri: spam@production, replicas: 1, weight: 100, server: {env: {DB_PASSWORD: hunter2}}}
"""


class Plane:
    def __init__(
        self, settings: ControlSettings, url: str, target: RecordingTarget, tokens: TokenStore
    ) -> None:
        self.settings, self.url, self.target, self.tokens = settings, url, target, tokens

    def token(self, role: Role, name: str | None = None) -> str:
        return self.tokens.create(name or f"t-{role.label}", role, created_by="test")[1]

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"{self.url}{API}", headers=headers, timeout=10)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    settings = ControlSettings(home=tmp_path / "home")
    target = RecordingTarget()
    with (
        Registry(settings) as registry,
        serve_in_thread(build_control_app(settings, registry, target=target)) as at,
    ):
        yield Plane(settings, f"http://{at}", target, TokenStore(registry.engine))


def test_open_on_loopback_until_the_first_token_then_closed_for_good(plane: Plane) -> None:
    with plane.http() as anonymous:
        assert anonymous.get("/models").status_code == 200
        assert anonymous.get("/whoami").json() == {
            "name": "anonymous",
            "role": "admin",
            "authenticated": False,
        }
        made = anonymous.post("/tokens", json={"name": "root", "role": "admin"})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        time.sleep(1.1)  # "a token exists" is remembered for a second
        refused = anonymous.get("/models")
        assert refused.status_code == 401
        assert refused.json()["field"] == "authorization"
        assert "MODELYARD_TOKEN" in refused.json()["error"]
    with plane.http(token) as admin:
        assert admin.get("/whoami").json() == {"name": "root", "role": "admin", "authenticated": True}
        admin.delete(f"/tokens/{made.json()['id']}").raise_for_status()
        assert admin.get("/models").status_code == 401  # revoked here: forgotten at once
    with plane.http() as anonymous:
        assert anonymous.get("/models").status_code == 401  # revoking every token does not reopen


def test_auth_on_needs_a_token_even_before_the_first_one(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home", auth="on")
    with serve_in_thread(build_control_app(settings)) as at, httpx.Client(base_url=f"http://{at}") as http:
        assert http.get(f"{API}/models").status_code == 401
        assert http.get(f"{API}/health").status_code == 200


def test_bad_expired_and_malformed_credentials_are_401(plane: Plane) -> None:
    short = plane.tokens.create("short", Role.ADMIN, created_by="test", expires_in=timedelta(seconds=1))[1]
    with plane.http(short) as http:
        assert http.get("/models").status_code == 200
        time.sleep(1.2)
        assert http.get("/models").status_code == 401
    good = plane.token(Role.ADMIN)
    for header in (f"Basic {good}", "Bearer", f"Bearer {good[:-1]}x", "Bearer mdy_000000000000_" + "a" * 43):
        answer = httpx.get(f"{plane.url}{API}/models", headers={"authorization": header})
        assert answer.status_code == 401, header
        assert answer.json()["kind"] == "unauthenticated"


def test_roles_deployer_pushes_and_moves_admin_deletes(plane: Plane) -> None:
    deployer, admin = plane.token(Role.DEPLOYER), plane.token(Role.ADMIN)
    with plane.http(deployer) as http:
        assert http.post("/models", json={"name": "spam"}).status_code == 201
        forbidden = http.delete("/models/spam")
        assert forbidden.status_code == 403
        assert "needs admin" in forbidden.json()["error"]
        assert http.post("/tokens", json={"name": "x", "role": "admin"}).status_code == 403
    with plane.http(admin) as http:
        assert http.delete("/models/spam").status_code == 204


def test_who_did_it_comes_from_the_token_never_the_client(plane: Plane) -> None:
    alice = plane.token(Role.DEPLOYER, "alice")
    with plane.http(alice) as http:
        http.post("/models", json={"name": "spam"}).raise_for_status()
        stored = http.post(
            "/artifacts", content=b"weights", headers={"content-type": "application/octet-stream"}
        )
        sha = stored.json()["sha256"]
        body = {"sha256": sha, "filename": "m.onnx", "user": "mallory"}
        registered = http.post("/models/spam/versions", json=body)
        assert registered.status_code == 201, registered.text
        assert registered.json()["user"] == "alice"
        moved = http.put("/models/spam/aliases/production", json={"version": 1, "user": "mallory"})
        assert moved.status_code == 200, moved.text
        history = http.get("/models/spam/history").json()["items"]
        assert [event["user"] for event in history] == ["alice"]
    with DeployClient(plane.url, user="mallory", token=alice) as deploy:
        assert deploy.apply(DEPLOY, "deploy.yaml")["ok"]
        assert deploy.history()[0]["user"] == "alice"


def test_viewers_see_deploy_files_without_env_values(plane: Plane) -> None:
    deployer, viewer = plane.token(Role.DEPLOYER), plane.token(Role.VIEWER)
    with DeployClient(plane.url, token=deployer) as deploy:
        applied = deploy.apply(DEPLOY, "deploy.yaml")
        assert applied["ok"], applied
        assert "hunter2" in deploy.record(applied["apply"]["id"])["file_text"]
    with DeployClient(plane.url, token=viewer) as deploy:
        text = deploy.record(applied["apply"]["id"])["file_text"]
        assert "hunter2" not in text
        assert "DB_PASSWORD: <redacted>" in text
        with pytest.raises(Exception, match="needs deployer"):
            deploy.apply(DEPLOY)


@pytest.mark.parametrize(
    ("headers", "status", "field"),
    [
        ({"host": "attacker.example:8090"}, 400, "host"),  # DNS rebinding: a foreign name for our address
        ({"origin": "https://attacker.example", "content-type": "application/json"}, 403, "origin"),
        ({"origin": "null", "content-type": "application/json"}, 403, "origin"),
        ({"sec-fetch-site": "cross-site", "content-type": "application/json"}, 403, "origin"),
        ({"content-type": "text/plain"}, 415, "content-type"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "content-type"),
        ({"content-type": "multipart/form-data; boundary=x"}, 415, "content-type"),
    ],
)
def test_what_a_web_page_can_send_is_refused_even_with_access_control_off(
    plane: Plane, headers: dict[str, str], status: int, field: str
) -> None:
    # The attack that ran a command: a page POSTs a deploy file as text/plain, no preflight needed.
    answer = httpx.post(f"{plane.url}{API}/deploy/apply", content=DEPLOY.encode(), headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert plane.target.running == {}
    assert "access-control-allow-origin" not in answer.headers


def test_same_origin_and_command_line_writes_still_work(plane: Plane) -> None:
    host = plane.url.removeprefix("http://")
    same = {"origin": plane.url, "host": host, "content-type": "application/yaml"}
    assert (
        httpx.post(f"{plane.url}{API}/deploy/diff", content=DEPLOY.encode(), headers=same).status_code == 200
    )
    bare = httpx.post(f"{plane.url}{API}/deploy/diff", content=DEPLOY.encode())  # no Content-Type at all
    assert bare.status_code == 200, bare.text
    form = {"content-type": "application/x-www-form-urlencoded"}  # what `curl --data-binary @f` sends
    refused = httpx.post(f"{plane.url}{API}/deploy/diff", content=DEPLOY.encode(), headers=form)
    assert "application/yaml" in refused.json()["error"]  # says what to send instead
    localhost = {"host": f"localhost:{host.split(':')[1]}"}
    assert httpx.get(f"{plane.url}{API}/models", headers=localhost).status_code == 200


def test_listening_off_loopback_needs_an_admin_token(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home", host="0.0.0.0")
    with pytest.raises(SystemExit, match="modelyard token create --name NAME --role admin"):
        check_exposure(settings)
    with Registry(settings) as registry:
        TokenStore(registry.engine).create("ops", Role.DEPLOYER, created_by="test")
    with pytest.raises(SystemExit):
        check_exposure(settings)  # a deployer cannot manage tokens: still refused
    with Registry(settings) as registry:
        TokenStore(registry.engine).create("root", Role.ADMIN, created_by="test")
    check_exposure(settings)
    check_exposure(ControlSettings(home=tmp_path / "other"))  # loopback: fine without any token


def test_accepting_any_host_needs_tokens_even_on_loopback(tmp_path: Path) -> None:
    # With the Host check off, a domain re-resolved to 127.0.0.1 would reach an open admin API.
    settings = ControlSettings(home=tmp_path / "home", allowed_hosts=["*"])
    with serve_in_thread(build_control_app(settings)) as at:
        rebound = {"host": f"rebind.attacker.example:{at.split(':')[1]}"}
        made = httpx.post(f"http://{at}{API}/tokens", json={"name": "x", "role": "admin"}, headers=rebound)
        assert made.status_code == 401, made.text


@pytest.mark.parametrize(
    "host", ["[::1].attacker.example", "[::1]x", "[::1]:80:80", "127.0.0.1.attacker.example"]
)
def test_host_values_that_only_start_like_ours_are_refused(plane: Plane, host: str) -> None:
    answer = httpx.get(f"{plane.url}{API}/models", headers={"host": host})
    assert (answer.status_code, answer.json()["field"]) == (400, "host")


def test_a_token_name_may_not_look_like_a_token_id(plane: Plane) -> None:
    with pytest.raises(InvalidInput, match="looks like a token id"):
        plane.tokens.create("0123456789ab", Role.VIEWER, created_by="test")
