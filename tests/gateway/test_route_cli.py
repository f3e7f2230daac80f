"""``modelyard route ...`` with typer's runner, on a local database and against a control-plane server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import ControlSettings, Registry
from modelyard.routing.client import RouteClient
from modelyard.routing.store import RouteStore
from modelyard.routing.table import VersionRoute
from tests.support import serve_in_thread

A, B = "http://127.0.0.1:9001", "http://127.0.0.1:9002"


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["route", *args], env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Registry]]:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        yield f"http://{address}", registry


def walkthrough(env: dict[str, str]) -> None:
    assert "mail/spam: v1=90 (90.0%), v2=10 (10.0%)" in run(env, "set", "mail/spam", "v1=90", "v2=10")
    out = run(env, "mirror", "mail/spam", "v3", "--fraction", "0.1")
    assert out.strip() == "mail/spam: v1=90 (90.0%), v2=10 (10.0%), v3=0 (0.0%); mirror v3 (10%)"
    assert "mirror" not in run(env, "unmirror", "mail/spam", "v3")
    assert f"mail/spam v1: replicas {A}, {B}" in run(env, "replicas", "mail/spam", "v1", B, A)
    assert f"replicas {A}, {B}, http://h:1" in run(env, "add-replica", "mail/spam", "v1", "http://h:1")
    assert f"replicas {A}, http://h:1" in run(env, "remove-replica", "mail/spam", "v1", B)
    out = run(env, "set", "mail/spam", "v2=30", "--keep-others")
    assert "v1=90 (75.0%), v2=30 (25.0%), v3=0 (0.0%)" in out
    out = run(env, "options", "mail/spam", "--timeout", "2.5", "--log-payload", "full", "--log-sample", "0.5")
    assert "timeout 2.5s, log payload full, log sample 50%" in out
    table = run(env, "show", "mail/spam")
    for cell in ("mail/spam", "75.0%", "http://h:1", "v3"):
        assert cell in table
    shown = json.loads(run(env, "show", "mail/spam", "--json"))
    assert (shown["timeout_s"], shown["log_payload"], shown["log_sample"]) == (2.5, "full", 0.5)
    assert [(v["version"], v["weight"]) for v in shown["versions"]] == [("v1", 90), ("v2", 30), ("v3", 0)]
    assert "removed v3: mail/spam: v1=90 (75.0%), v2=30 (25.0%)" in run(
        env, "delete", "mail/spam", "--version", "v3"
    )
    run(env, "set", "search/rank", "v1=1")
    listed = json.loads(run(env, "show", "--json"))
    assert [(r["project"], r["model"]) for r in listed] == [("mail", "spam"), ("search", "rank")]
    assert "deleted mail/spam" in run(env, "delete", "mail/spam")
    assert "search/rank" in run(env, "show")


def test_the_cli_on_the_local_database(env: dict[str, str], tmp_path: Path) -> None:
    walkthrough(env)
    with RouteStore.open(ControlSettings(home=tmp_path / "home")) as store:
        assert [(r.project, r.model) for r in store.list()] == [("search", "rank")]
        assert store.revision() == 11  # one per write


def test_the_cli_against_a_control_plane_server(
    env: dict[str, str], server: tuple[str, Registry], tmp_path: Path
) -> None:
    url, registry = server
    walkthrough({**env, "MODELYARD_CONTROL_URL": url})
    assert [(r.project, r.model) for r in RouteStore(registry.engine).list()] == [("search", "rank")]
    assert not (tmp_path / "home").exists()  # nothing local was opened
    assert "search/rank" in run(env, "show", "--control-url", url)


def test_errors_are_one_line_on_stderr_with_exit_code_2(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["route", "show", "mail/spam"], env=env)
    assert result.exit_code == 2
    assert result.stderr.strip() == "modelyard: route mail/spam not found"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    run(env, "set", "mail/spam", "v1=1")
    assert "weight above 0" in run(env, "set", "mail/spam", "v1=0", code=2)
    assert "already has replica" in run(env, "add-replica", "mail/spam", "v1", A) + run(
        env, "add-replica", "mail/spam", "v1", A, code=2
    )
    assert "http://host:port" in run(env, "replicas", "mail/spam", "v1", "localhost:80", code=2)
    assert "log_payload" in run(env, "options", "mail/spam", "--log-payload", "all", code=2)
    assert "fraction" in run(env, "mirror", "mail/spam", "v2", "--fraction", "0", code=2)
    assert "v9 of mail/spam" in run(env, "unmirror", "mail/spam", "v9", code=2)
    # Malformed arguments are usage errors, also exit code 2.
    assert run(env, "set", "mailspam", "v1=1", code=2)
    assert run(env, "set", "mail/spam", "v1=lots", code=2)
    assert run(env, "set", "mail/spam", "v1=1", "v1=2", code=2)
    assert "cannot reach the control plane" in run(env, "show", "--control-url", "http://127.0.0.1:1", code=2)


def test_the_client_raises_what_the_store_raises(server: tuple[str, Registry]) -> None:
    url, registry = server
    with RouteClient(url) as client:
        assert client.revision() == 0
        route = client.set_weights("mail", "spam", {"v1": 90, "v2": 10})
        assert route == RouteStore(registry.engine).get("mail", "spam")
        assert client.set_replicas("mail", "spam", "v1", [B, A]).version("v1") == VersionRoute(
            "v1", 90, replicas=(A, B)
        )
        assert client.set_mirror("mail", "spam", "v3", 0.5).version("v3") == VersionRoute(
            "v3", mirror=True, mirror_fraction=0.5
        )
        assert client.set_options("mail", "spam", log_sample=0.5, target={"v2": "x"}).log_sample == 0.5
        assert client.list() == [client.get("mail", "spam")]
        assert client.revision() == 4
        with pytest.raises(NotFound) as missing:
            client.get("mail", "ham")
        assert missing.value.field == "model"
        with pytest.raises(Conflict):
            client.add_replica("mail", "spam", "v1", A)
        with pytest.raises(InvalidInput) as invalid:
            client.set_weights("mail", "spam", {"v1": -1})
        assert invalid.value.field == "weights.v1"
        with pytest.raises(InvalidInput) as traversal:
            client.get("..", "spam")  # refused before any request is sent
        assert traversal.value.field == "project"
        client.remove_replica("mail", "spam", "v1", A)
        client.clear_mirror("mail", "spam", "v3")
        client.remove_version("mail", "spam", "v3")
        client.delete("mail", "spam")
        assert client.list() == []
        assert client.revision() == 8  # the refused writes changed nothing
