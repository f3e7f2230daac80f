"""The command group class of every ``modelyard`` group: typer's, minus a needless pydantic import.

Typer runs each parameter's value through a pydantic ``TypeAdapter``, except a bool flag's bool.
A group's ``--help``, ``--install-completion`` and ``--show-completion`` default to None, so every
command (``modelyard deploy --help`` too) would import pydantic, about 70 ms, to coerce the None of
flags nobody gave. Those flags are actions (a callback, no value for the command function): a
default of False means the same to their callbacks and is a bool, which typer takes as it is.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

__all__ = ["Group"]


class Group(TyperGroup):
    """A typer group whose action flags parse without pydantic (see the module's docstring)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            # Not the --install-completion that takes a shell name: that one is no flag.
            if getattr(param, "is_flag", False) and not param.expose_value and param.default is None:
                param.default = False
        return params
