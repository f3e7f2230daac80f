"""``modelyard registry ...``: in-process with typer's runner, locally and against a server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from tests.support import serve_in_thread


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["registry", *args], env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


def walkthrough(env: dict[str, str], tmp_path: Path) -> None:
    model = tmp_path / "churn.onnx"
    model.write_bytes(b"churn weights")
    out = run(env, "push", str(model), "--metric", "auc=0.91", "--param", "depth=3", "--label", "team=ml",
              "--user", "ana", "--alias", "staging", "--json")  # fmt: skip
    pushed = json.loads(out)
    assert (pushed["name"], pushed["version"], pushed["metrics"], pushed["aliases"]) == (
        "churn", 1, {"auc": 0.91}, ["staging"],
    )  # fmt: skip
    assert "registered churn/2" in run(env, "push", str(model), "--description", "retrained")
    assert "churn@production -> 2 (revision 1)" in run(
        env, "alias", "churn", "production", "2", "--user", "bob"
    )
    assert "churn" in run(env, "list")
    versions = json.loads(run(env, "list", "churn", "--page-size", "1", "--json"))
    assert [v["version"] for v in versions["items"]] == [2]
    assert versions["next_page_token"]
    rest = json.loads(run(env, "list", "churn", "--page-token", versions["next_page_token"], "--json"))
    assert [v["version"] for v in rest["items"]] == [1]
    assert json.loads(run(env, "show", "churn@production", "--json"))["description"] == "retrained"
    assert "retrained" in run(env, "show", "churn@production")
    history = json.loads(run(env, "history", "churn", "--json"))["items"]
    assert [(e["alias"], e["to_version"]) for e in history] == [("production", 2), ("staging", 1)]
    downloaded = run(env, "download", "churn@staging", "-o", str(tmp_path / "dl")).strip()
    assert Path(downloaded).read_bytes() == b"churn weights"
    assert "deleted churn@staging" in run(env, "alias", "churn", "staging", "--delete")
    assert "deleted churn/1" in run(env, "delete", "churn/1")
    assert "no version 1" in run(env, "show", "churn/1", code=1)


def test_cli_on_the_local_registry(env: dict[str, str], tmp_path: Path) -> None:
    walkthrough(env, tmp_path)
    assert (tmp_path / "home" / "registry.db").is_file()  # SQLite under $MODELYARD_HOME, nothing to set up


def test_cli_against_a_registry_server(env: dict[str, str], tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        walkthrough({**env, "MODELYARD_CONTROL_URL": f"http://{address}"}, tmp_path)
        assert registry.resolve("churn@production").version == 2  # it went to the server...
    assert not (tmp_path / "home" / "registry.db").exists()  # ...not to a local registry


def test_cli_refuses_in_use_deletes_and_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    run(env, "push", str(model))
    with Registry(ControlSettings(home=tmp_path / "home")) as registry:
        registry.mark_used("m", 1, "deployment/prod-eu")
    assert "in use by deployment/prod-eu" in run(env, "delete", "m/1", code=1)
    assert "deleted m/1" in run(env, "delete", "m/1", "--force")
    assert run(env, "delete", "m", code=2)  # a version number is required
    assert run(env, "push", str(model), "--metric", "auc=high", code=2)
    assert run(env, "alias", "m", "production", code=2)  # neither VERSION nor --delete


def test_alias_records_the_caller_unless_user_is_given(env: dict[str, str], tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    run(env, "push", str(model))
    caller = {**env, "LOGNAME": "carol", "USER": "carol"}  # what getpass.getuser() reads first
    run(caller, "alias", "m", "staging", "1")
    run(caller, "alias", "m", "production", "1", "--user", "bob")
    run(caller, "alias", "m", "staging", "--delete")
    history = json.loads(run(env, "history", "m", "--json"))["items"]  # newest first
    assert [(e["alias"], e["to_version"], e["user"]) for e in history] == [
        ("staging", None, "carol"),
        ("production", 1, "bob"),
        ("staging", 1, "carol"),
    ]


@pytest.mark.slow
def test_registry_serve_announces_its_url_and_serves(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "modelyard.cli.main", "registry", "serve", "--port", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.fullmatch(r"modelyard registry: serving on (http://127\.0\.0\.1:\d+)\n", line)
        assert found, line
        response = httpx.get(f"{found.group(1)}/api/v1/models", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_page_token": None}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


def test_an_unreachable_registry_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    out = run(env, "list", "--control-url", "http://127.0.0.1:1", code=1)
    assert out.startswith("modelyard: cannot reach the registry at http://127.0.0.1:1: "), out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    database = {**env, "MODELYARD_REGISTRY_DB": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"}
    out = run(database, "list", code=1)
    assert out.startswith("modelyard: registry database error: "), out
    assert len(out.strip().splitlines()) == 1


def test_registry_errors_names_what_the_cli_catches() -> None:
    from sqlalchemy.exc import OperationalError

    from modelyard.cli.registry import REGISTRY_ERRORS, registry_error_message

    assert issubclass(httpx.ConnectError, REGISTRY_ERRORS)
    assert issubclass(OperationalError, REGISTRY_ERRORS)
    assert issubclass(OSError, REGISTRY_ERRORS)
    message = registry_error_message(httpx.ConnectError("refused\nmore"), "http://x")
    assert message == "modelyard: cannot reach the registry at http://x: refused"
