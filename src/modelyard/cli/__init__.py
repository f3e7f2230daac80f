"""The ``modelyard`` command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.cli.main import app, main

__all__ = [
    "app",
    "main",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "app": "main",
        "main": "main",
    },
)
