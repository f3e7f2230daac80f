"""Lazy re-exports for package ``__init__`` modules.

A package's ``__init__`` names its public surface, but importing the package must not import every
module behind it: ``import modelyard.gateway`` would otherwise load the routing store and
SQLAlchemy, and the import graph would no longer say which plane needs which. Each ``__init__``
lists where its names live and gets a module ``__getattr__`` that imports on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each exported name to the
    module that defines it, relative to ``package`` (``"core"``) or absolute (``"modelyard.x.y"``)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        absolute = module if module.startswith("modelyard.") else f"{package}.{module}"
        value = getattr(importlib.import_module(absolute), name)
        setattr(importlib.import_module(package), name, value)  # the next lookup is a plain one
        return value

    def __dir__() -> list[str]:
        return sorted({*where, *vars(importlib.import_module(package))})

    return __getattr__, __dir__
