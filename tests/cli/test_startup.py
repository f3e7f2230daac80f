"""``modelyard version`` and ``--help`` start fast: they import none of what the commands run.

Wall time is too noisy to assert on a shared CI box, so these tests check the cause instead: which
modules a fresh interpreter has loaded once the command is done. Each of the libraries below costs
tens of milliseconds to import (SQLAlchemy and alembic alone were half a second), and only a command
that uses one imports it, inside the command function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import modelyard
from modelyard.cli.group import Group
from modelyard.cli.main import app

HEAVY = (
    "alembic",
    "anyio",
    "fsspec",
    "h11",
    "httpx",
    "numpy",
    "orjson",
    "prometheus_client",
    "pydantic",
    "pydantic_core",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "yaml",
)
# Runs main() as the script does and reports, as its last line, the exit code and every module loaded.
PROBE = """\
import json, sys
from modelyard.cli.main import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _probe(*args: str) -> tuple[str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    *output, last = result.stdout.splitlines()
    report = json.loads(last)
    assert report["code"] in (0, None), result.stdout + result.stderr
    return "\n".join(output), set(report["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in HEAVY)


def _groups() -> list[str]:
    return sorted(typer.main.get_group(app).commands)


@pytest.mark.slow
def test_version_imports_nothing_heavy_not_even_rich() -> None:
    output, modules = _probe("version")
    assert output == modelyard.__version__
    assert _heavy(modules) == []
    assert "rich" not in modules  # typer's help renderer: not needed to print a version


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [["--help"], ["deploy", "--help"], ["registry", "--help"], ["route", "--help"],
             ["gateway", "--help"], ["deploy", "apply", "--help"], ["serve", "--help"]],
    ids=" ".join,
)  # fmt: skip
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    output, modules = _probe(*args)
    assert "Usage" in output
    assert _heavy(modules) == []


@pytest.mark.slow
def test_python_m_modelyard_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelyard", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")}
    assert set(_groups()) <= listed
    assert {"registry", "route", "gateway", "deploy", "serve", "up", "version", "build"} <= listed


def test_the_version_shortcut_prints_what_the_version_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modelyard.cli.main import main

    main(["version"])
    assert capsys.readouterr().out == CliRunner().invoke(app, ["version"]).output
    with pytest.raises(SystemExit) as exited:  # anything more goes through typer
        main(["version", "--help"])
    assert exited.value.code == 0
    assert "Print modelyard's version." in capsys.readouterr().out


def _params(group: Any) -> dict[str, Any]:
    context = group.context_class(group, info_name="modelyard")
    return {param.name: param for param in group.get_params(context)}


def test_groups_give_their_action_flags_a_bool_default() -> None:
    root = typer.main.get_command(app)  # with the completion options, which get_group leaves out
    assert isinstance(root, Group)
    params = _params(root)
    for name in ("help", "install_completion", "show_completion"):
        assert params[name].default is False, name
    groups = [command for command in root.commands.values() if hasattr(command, "commands")]
    assert {"registry", "route", "gateway", "deploy", "key"} <= {group.name for group in groups}
    assert all(isinstance(group, Group) for group in groups)


def test_a_value_taking_completion_option_keeps_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer's other variant takes the shell's name: it is no flag, and False would not be a shell.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    params = _params(typer.main.get_command(app))
    assert not params["show_completion"].is_flag
    assert params["show_completion"].default is None
    assert params["help"].default is False
