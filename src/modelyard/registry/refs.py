"""Model references: ``name`` (the latest version), ``name/3`` (a version), ``name@alias``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidInput

__all__ = [
    "ALIAS_PATTERN",
    "CONSUMER_PATTERN",
    "MAX_VERSION",
    "NAME_PATTERN",
    "ModelRef",
    "check_alias",
    "check_consumer",
    "check_name",
    "check_text",
    "parse_ref",
]

# Names and aliases end up in URLs, file names and CLI arguments: keep them to a safe alphabet, and
# keep "/" and "@" out of names so a reference always parses one way. Every pattern here is matched
# whole (fullmatch): with match, a "$" would also accept a trailing newline ("spam\n").
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
RESERVED_ALIASES = frozenset({"latest"})
# Consumers (``deployment/prod-eu``) may hold "/", but no "." or ".." segment and no empty one: they
# are one URL path parameter, and such segments would be normalised away on the way to the server.
CONSUMER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
# The largest version number: 9 digits, so every version can be addressed as name/<version>.
MAX_VERSION = 999_999_999


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 128)", field="name"
        )
    return name


def check_consumer(consumer: str) -> str:
    segments = consumer.split("/")
    if not CONSUMER_PATTERN.fullmatch(consumer) or any(part in ("", ".", "..") for part in segments):
        raise InvalidInput(
            f"invalid consumer {consumer!r}: letters, digits, '.', '_', '-' and '/'-separated segments"
            " (at most 200, no empty, '.' or '..' segment)",
            field="consumer",
        )
    return consumer


def check_text(value: str, field: str, max_length: int | None = None) -> str:
    """Free text the database will store or compare: no NUL characters, and at most ``max_length``."""
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{field} must be at most {max_length} characters", field=field)
    return value


def check_alias(alias: str) -> str:
    if not ALIAS_PATTERN.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InvalidInput(
            f"invalid alias {alias!r}: lower-case letters, digits, '_' or '-', starting with a letter"
            " (and not 'latest')",
            field="alias",
        )
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set, or neither (latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias}" if self.alias is not None else self.name


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name/latest``, ``name/<int>`` or ``name@alias``."""
    if "@" in ref:
        name, _, alias = ref.partition("@")
        return ModelRef(check_name(name), alias=check_alias(alias))
    if "/" in ref:
        name, _, version = ref.partition("/")
        if version == "latest":
            return ModelRef(check_name(name))
        return ModelRef(check_name(name), version=parse_version(version))
    return ModelRef(check_name(ref))


def parse_version(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise InvalidInput(f"invalid version {text!r}: versions are integers from 1", field="version")
    return int(text)
