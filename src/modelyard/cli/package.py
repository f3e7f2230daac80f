"""``modelyard build`` / ``verify`` / ``dockerfile`` / ``import-mlflow``: model packages."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the package commands to the root CLI."""
