"""``modelyard token``: the first admin token made on the control plane's machine, then managed
over HTTP with it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from tests.support import serve_in_thread

runner = CliRunner()


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["token", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_first_admin_token_locally_then_everything_over_http(tmp_path: Path, cli_env: dict[str, str]) -> None:
    code, out, err = _run(cli_env, "create", "--name", "root", "--role", "admin")
    assert code == 0, err
    root = out.strip()
    assert root.startswith("mdy_")
    assert "shown only now" in err
    settings = ControlSettings(home=Path(cli_env["MODELYARD_HOME"]))
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as at:
        remote = {**cli_env, "MODELYARD_CONTROL_URL": f"http://{at}"}
        code, _, err = _run(remote, "create", "--name", "ci", "--role", "deployer")
        assert code == 2
        assert "needs a token" in err
        admin = {**remote, "MODELYARD_TOKEN": root}
        code, out, err = _run(admin, "create", "--name", "ci", "--role", "deployer", "--expires", "30d")
        assert code == 0, err
        ci = out.strip()
        assert _run({**remote, "MODELYARD_TOKEN": ci}, "whoami")[1].strip() == "ci (deployer)"
        code, _, err = _run({**remote, "MODELYARD_TOKEN": ci}, "list")
        assert code == 2
        assert "needs admin" in err
        code, out, _ = _run(admin, "list")
        assert "root" in out
        assert "ci" in out
        assert "expires" in out
        assert ci not in out
        assert root not in out
        assert _run(admin, "revoke", "ci")[0] == 0
        code, _, err = _run({**remote, "MODELYARD_TOKEN": ci}, "whoami")
        assert code == 2
        assert "not valid" in err
        assert "revoked" in _run(admin, "list", "--all")[1]


def test_bad_options_are_one_line_errors(cli_env: dict[str, str]) -> None:
    code, _, err = _run(cli_env, "create", "--name", "x", "--role", "root")
    assert code == 2
    assert "unknown role 'root'" in err
    code, _, err = _run(cli_env, "create", "--name", "x", "--expires", "soon")
    assert code == 2
    assert "--expires 'soon'" in err
    code, _, err = _run(cli_env, "create", "--name", "bad name\n")
    assert code == 2
    assert "token name" in err
    _run(cli_env, "create", "--name", "x")
    code, _, err = _run(cli_env, "create", "--name", "x")
    assert code == 2
    assert "active token named 'x'" in err
    code, _, err = _run(cli_env, "revoke", "nobody")
    assert code == 2
    assert "no token" in err
