"""One rule for where every command group goes: ``--control-url`` / ``MODELYARD_CONTROL_URL`` is a
control plane over HTTP; neither is the local database (``deploy``: an error saying what to do).
The old spellings (``--control-plane``, ``--registry``, ``MODELYARD_REGISTRY_URL``) still work, with
a warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelyard.cli.control_url import resolve_control_url
from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from modelyard.routing.store import RouteStore
from tests.deploy.support import RecordingTarget
from tests.support import serve_in_thread

DEPLOY = """deployments:
- project: mail
  model: spam
  versions:
  - {version: v1, spec: {uri: spam/1, weight: 100}}
"""
NOBODY = "http://127.0.0.1:1"  # nothing listens there


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Registry]]:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry:
        control = build_control_app(settings, registry, target=RecordingTarget())
        with serve_in_thread(control) as address:
            yield f"http://{address}", registry


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def test_the_flag_wins_then_the_variable_then_its_deprecated_name(capsys: pytest.CaptureFixture[str]) -> None:
    both = {"MODELYARD_CONTROL_URL": "http://new:1", "MODELYARD_REGISTRY_URL": "http://old:1"}
    assert resolve_control_url("http://flag:1", both) == "http://flag:1"
    assert resolve_control_url(None, both) == "http://new:1"
    assert capsys.readouterr().err == ""  # the deprecated name is not even looked at
    assert resolve_control_url(None, {"MODELYARD_REGISTRY_URL": "http://old:1"}) == "http://old:1"
    assert "MODELYARD_REGISTRY_URL is deprecated: set MODELYARD_CONTROL_URL" in capsys.readouterr().err
    assert resolve_control_url(None, {}) is None
    assert resolve_control_url(" ", {"MODELYARD_CONTROL_URL": "", "MODELYARD_REGISTRY_URL": ""}) is None


def test_route_uses_the_local_database_unless_a_url_is_set(
    env: dict[str, str], server: tuple[str, Registry], tmp_path: Path
) -> None:
    url, registry = server
    assert invoke(env, "route", "set", "mail/local", "v1=1").exit_code == 0
    assert (tmp_path / "home" / "registry.db").is_file()
    assert invoke({**env, "MODELYARD_CONTROL_URL": url}, "route", "set", "mail/remote", "v1=1").exit_code == 0
    assert invoke(env, "route", "set", "mail/flag", "v1=1", "--control-url", url).exit_code == 0
    old = invoke(env, "route", "set", "mail/old", "v1=1", "--control-plane", url)
    assert old.exit_code == 0, old.output
    assert "--control-plane is deprecated: use --control-url" in old.stderr
    on_server = {(r.project, r.model) for r in RouteStore(registry.engine).list()}
    assert on_server == {("mail", "remote"), ("mail", "flag"), ("mail", "old")}
    # the flag beats the variable
    beaten = invoke({**env, "MODELYARD_CONTROL_URL": NOBODY}, "route", "show", "--control-url", url)
    assert beaten.exit_code == 0, beaten.output


def test_registry_uses_the_local_database_unless_a_url_is_set(
    env: dict[str, str], server: tuple[str, Registry], tmp_path: Path
) -> None:
    url, registry = server
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    assert invoke(env, "registry", "push", str(model), "--name", "local").exit_code == 0
    remote = invoke({**env, "MODELYARD_CONTROL_URL": url}, "registry", "push", str(model), "--name", "remote")
    assert remote.exit_code == 0, remote.output
    old_env = invoke(
        {**env, "MODELYARD_REGISTRY_URL": url}, "registry", "push", str(model), "--name", "oldenv"
    )
    assert old_env.exit_code == 0, old_env.output
    assert "MODELYARD_REGISTRY_URL is deprecated" in old_env.stderr
    old_flag = invoke(env, "registry", "push", str(model), "--name", "oldflag", "--registry", url)
    assert old_flag.exit_code == 0, old_flag.output
    assert "--registry is deprecated: use --control-url" in old_flag.stderr
    assert {m.name for m in registry.list_models().items} == {"remote", "oldenv", "oldflag"}
    with Registry(ControlSettings(home=tmp_path / "home")) as local:
        assert {m.name for m in local.list_models().items} == {"local"}


def test_deploy_without_a_url_says_how_to_get_one(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(DEPLOY)
    for args in (["apply", str(path)], ["diff", str(path)], ["status"], ["history"], ["rollback", "1"]):
        result = invoke(env, "deploy", *args)
        assert result.exit_code == 2, (args, result.output)
        assert f"`modelyard deploy {args[0]}` needs a running control plane" in result.stderr
        assert "modelyard up" in result.stderr
        assert "MODELYARD_CONTROL_URL" in result.stderr
    assert not (tmp_path / "home").exists()  # nothing local was opened, nothing started
    assert invoke(env, "deploy", "validate", str(path)).exit_code == 0  # offline commands need none
    assert invoke(env, "deploy", "diff", str(path), "--against", str(path)).exit_code == 0


def test_deploy_goes_where_the_url_says(
    env: dict[str, str], server: tuple[str, Registry], tmp_path: Path
) -> None:
    url, _ = server
    path = tmp_path / "deploy.yaml"
    path.write_text(DEPLOY)
    applied = invoke({**env, "MODELYARD_CONTROL_URL": url}, "deploy", "apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert "apply #1: done" in applied.stdout
    old = invoke(env, "deploy", "history", "--control-plane", url)
    assert old.exit_code == 0, old.output
    assert "#1" in old.stdout
    assert "--control-plane is deprecated" in old.stderr
    unreachable = invoke({**env, "MODELYARD_CONTROL_URL": NOBODY}, "deploy", "status")
    assert unreachable.exit_code == 2
    assert f"cannot reach the control plane at {NOBODY}" in unreachable.stderr


@pytest.mark.parametrize(
    ("extra_env", "args"),
    [
        ({"MODELYARD_CONTROL_URL": NOBODY}, []),
        ({}, ["--control-url", NOBODY]),
        ({}, ["--registry", NOBODY]),  # the old flags: both were serve's
        ({}, ["--control-plane", NOBODY]),
    ],
)
def test_serve_fetches_registry_refs_from_the_url(
    env: dict[str, str], extra_env: dict[str, str], args: list[str]
) -> None:
    result = invoke({**env, **extra_env}, "serve", "spam@production", *args)
    assert result.exit_code == 2
    assert f"cannot reach the registry at {NOBODY}" in result.stderr
