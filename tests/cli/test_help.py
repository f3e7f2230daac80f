"""Every command's --help renders (rich markup in a help text once crashed `modelyard --help`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from modelyard.cli.main import app


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer ships its own copy of click)
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_the_command_tree_has_the_gateway_and_route_commands() -> None:
    assert ("gateway", "serve") in COMMANDS
    assert ("route", "set") in COMMANDS
    assert ("route", "mirror") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "modelyard")
def test_help_renders(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "modelyard")
def test_flags_take_no_value_in_help(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def _options(group: Any) -> Iterator[Any]:
    for command in group.commands.values():
        if hasattr(command, "commands"):
            yield from _options(command)
        else:
            yield from (p for p in command.params if p.param_type_name == "option")


def test_a_flag_that_defaults_to_true_can_be_turned_off() -> None:
    flags = [option for option in _options(typer.main.get_group(app)) if option.is_flag]
    assert any("--isolated" in flag.opts for flag in flags)
    for flag in flags:
        assert flag.default is not True or flag.secondary_opts, flag.opts


@pytest.mark.parametrize(
    ("command", "args", "name"),
    [
        (("serve",), ["--isolated", "model.onnx"], "isolated"),
        (("registry", "gc"), ["--dry-run"], "dry_run"),
        (("registry", "alias"), ["--delete", "iris", "staging"], "delete"),
        (("registry", "list"), ["--json", "iris"], "as_json"),
    ],
)
def test_a_flag_parses_without_a_value(command: tuple[str, ...], args: list[str], name: str) -> None:
    target: Any = typer.main.get_group(app)
    for part in command:
        target = target.commands[part]
    given = target.make_context(command[-1], list(args)).params
    assert given[name] is True
    without = [arg for arg in args if not arg.startswith("--")]
    assert target.make_context(command[-1], without).params[name] is False
    if command == ("serve",):  # the word after the flag is a model path, not the flag's value
        assert given["paths"] == ["model.onnx"]
