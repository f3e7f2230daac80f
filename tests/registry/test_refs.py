"""References, names, aliases and page tokens: parsing and refusing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry import ModelRef, parse_ref
from modelyard.registry.pages import decode_token, encode_token, page_size
from modelyard.registry.refs import check_alias, check_consumer, check_name
from modelyard.registry.store import check_digest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iris", ModelRef("iris")),
        ("iris/latest", ModelRef("iris")),
        ("iris/3", ModelRef("iris", version=3)),
        ("iris@production", ModelRef("iris", alias="production")),
        ("my.model-v2_x@canary-eu", ModelRef("my.model-v2_x", alias="canary-eu")),
    ],
)
def test_parse_ref(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected  # str() round-trips


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "name"),
        ("iris/0", "version"),
        ("iris/-1", "version"),
        ("iris/abc", "version"),
        ("iris@", "alias"),
        ("iris@Production", "alias"),
        ("iris@latest", "alias"),
        ("iris@1st", "alias"),
        ("../etc@prod", "name"),
        ("a b", "name"),
        ("iris\n", "name"),  # "$" with re.match took a trailing newline
        ("iris\n/3", "name"),
        ("iris@prod\n", "alias"),
        ("iris/3\n", "version"),
    ],
)
def test_bad_refs_name_the_part_at_fault(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ref(text)
    assert caught.value.field == field


def test_aliases_are_a_safe_pattern() -> None:
    assert check_alias("staging") == "staging"
    for bad in ("prod/eu", "a" * 64, "_x", "x y", "prod\n"):
        with pytest.raises(InvalidInput):
            check_alias(bad)


@pytest.mark.parametrize(
    ("check", "good"),
    [(check_name, "iris"), (check_alias, "production"), (check_consumer, "deployment/mail/spam/v1")],
)
def test_no_check_takes_a_trailing_newline(check: Callable[[str], str], good: str) -> None:
    assert check(good) == good
    for bad in (f"{good}\n", f"{good}\r\n", f"{good}\nx"):
        with pytest.raises(InvalidInput):
            check(bad)


def test_a_digest_with_a_trailing_newline_is_refused() -> None:
    digest = "ab" * 32
    assert check_digest(digest) == digest
    with pytest.raises(InvalidInput):
        check_digest(digest + "\n")


def test_page_tokens_round_trip_and_are_bound_to_their_query() -> None:
    query = {"list": "versions", "model": "iris", "search": ""}
    token = encode_token(42, query)
    assert decode_token(token, query, int) == 42
    assert decode_token(None, query, int) is None
    with pytest.raises(InvalidInput, match="different query"):
        decode_token(token, {**query, "model": "other"}, int)
    with pytest.raises(InvalidInput, match="invalid page token"):
        decode_token("not-a-token!", query, int)


def test_page_size_is_clamped() -> None:
    assert page_size(None, 50, 1000) == 50
    assert page_size(5000, 50, 1000) == 1000
    with pytest.raises(InvalidInput):
        page_size(0, 50, 1000)
