"""Batching defaults stated in the docs are the code's defaults: read both, compare.

The docs said 5 ms for the zero-code batching window long after the code moved to 2 ms. There are
two defaults, easy to mix up: the server's for zero-code runtimes (``Settings``) and the
``@modelyard.batch`` decorator's own (``BatchSpec``); each page that states one is checked here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from modelyard.sdk.batch import BatchSpec, batch
from modelyard.server.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def _stated(page: str, pattern: str) -> tuple[float, ...]:
    """The numbers ``pattern`` captures on docs/``page``; fails when the sentence is gone."""
    found = re.findall(pattern, (DOCS / page).read_text(), flags=re.DOTALL)
    assert len(found) == 1, f"docs/{page}: expected one match of {pattern!r}, found {len(found)}"
    groups = found[0] if isinstance(found[0], tuple) else (found[0],)
    return tuple(float(group) for group in groups)


ZERO_CODE = (Settings().default_max_batch_size, Settings().default_max_latency_ms)


@pytest.mark.parametrize(
    ("page", "pattern", "expected"),
    [
        ("runtimes.md", rf"\(default {NUMBER} rows, {NUMBER} ms\)", ZERO_CODE),
        (
            "serving.md",
            rf"`default_max_batch_size`, `default_max_latency_ms` \| {NUMBER}, {NUMBER} \|",
            ZERO_CODE,
        ),
        ("sdk.md", rf"{NUMBER} ms is the zero-code default", ZERO_CODE[1:]),
    ],
)
def test_the_zero_code_batching_defaults_in_the_docs_are_the_servers(
    page: str, pattern: str, expected: tuple[float, ...]
) -> None:
    assert _stated(page, pattern) == expected


def test_the_decorators_defaults_in_the_docs_are_its_own() -> None:
    parameters = inspect.signature(batch).parameters
    decorator = (parameters["max_batch_size"].default, parameters["max_latency_ms"].default)
    assert decorator == (BatchSpec().max_batch_size, BatchSpec().max_latency_ms)
    pattern = (
        rf"`@modelyard\.batch\(\)` with no arguments means "
        rf"`max_batch_size={NUMBER},\s+max_latency_ms={NUMBER}`"
    )
    assert _stated("sdk.md", pattern) == decorator
