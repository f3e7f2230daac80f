"""Zero-code runtimes: standard model formats served as ordinary model classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.runtimes.loader import SUFFIXES, spec_from_config, spec_from_path

__all__ = [
    "SUFFIXES",
    "spec_from_config",
    "spec_from_path",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SUFFIXES": "loader",
        "spec_from_config": "loader",
        "spec_from_path": "loader",
    },
)
