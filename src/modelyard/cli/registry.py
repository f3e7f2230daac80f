"""``modelyard registry ...``: the model registry from the command line."""

from __future__ import annotations

import typer

__all__ = ["registry_app"]

registry_app = typer.Typer(help="The model registry: push, list, show, alias, download, delete.")


@registry_app.callback()
def _root() -> None:
    """The model registry."""
