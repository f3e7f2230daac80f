"""Zero-code runtimes: standard model formats served as ordinary model classes.

A ``.modelyard`` package is unpacked by ``modelyard.package.loading``, which then comes here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.runtimes.formats import SUFFIXES
    from modelyard.runtimes.loader import spec_from_file
    from modelyard.runtimes.sources import load_source

__all__ = [
    "SUFFIXES",
    "load_source",
    "spec_from_file",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SUFFIXES": "formats",
        "load_source": "sources",
        "spec_from_file": "loader",
    },
)
