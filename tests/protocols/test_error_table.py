"""The one error table covers every kind, and a client reads each status back as its kind."""

from __future__ import annotations

import pytest

from modelyard.errors import ErrorKind, ModelyardError
from modelyard.web.errors import STATUS_BY_KIND, error_body, error_from_body


def test_every_error_kind_has_a_status() -> None:
    assert set(STATUS_BY_KIND) == set(ErrorKind)
    assert all(400 <= status <= 599 for status in STATUS_BY_KIND.values())


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_an_error_body_reads_back_as_its_kind(kind: ErrorKind) -> None:
    error = ModelyardError("m", field="f")
    error.kind = kind
    back = error_from_body(STATUS_BY_KIND[kind], error_body(error))
    assert (back.kind, back.message, back.field) == (kind, "m", "f")
