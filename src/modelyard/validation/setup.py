"""A registered model's validation setup, and the jobs that run it: the API's value objects, the
checks a setup must pass, and the dataset read from where the setup says.

A setup names the dataset (an absolute local path, or a URL of an object store, ``https`` or, for
tests, ``memory``: ``s3://bucket/holdout.npz``, ``gs://...``, ``https://data.example.com/x.csv``),
the label column, the policy (the gates of ``modelyard validate``),
the baseline alias (default ``production``), the triggers (``push``: every new version;
``alias:staging``: every move of that alias) and ``promote_to``, the alias a pass moves (unset: the
verdict is only recorded).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.registry.refs import check_alias, check_text
from modelyard.routing.table import is_metadata_host
from modelyard.validation.data import FORMATS
from modelyard.validation.policy import MAX_POLICY_BYTES, Policy, parse_policy

__all__ = [
    "DATASET_SCHEMES",
    "DEFAULT_BASELINE",
    "MAX_DATASET_URI",
    "JobView",
    "SetupRequest",
    "ValidationSetup",
    "check_dataset_host",
    "check_dataset_uri",
    "checked_setup",
    "dataset_file",
    "parse_triggers",
]

DEFAULT_BASELINE = "production"
MAX_DATASET_URI = 1000
PUSH = "push"
ALIAS_PREFIX = "alias:"
# Where a dataset may come from, besides an absolute local path: object stores, HTTPS (never plain
# HTTP, which any hop may answer), and memory:// for tests. A URL is read by the control plane with
# its own credentials and network position, so anything else (file://, ftp://, http://, ssh://...)
# is refused rather than trusted.
DATASET_SCHEMES = frozenset({"s3", "gs", "gcs", "az", "abfs", "https", "memory"})


class SetupRequest(BaseModel):
    """What ``PUT /api/v1/models/{name}/validation`` takes. ``policy`` is a mapping of gates, or
    the text of a policy file (YAML or JSON); None: the default gates."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=MAX_DATASET_URI)
    labels: str | None = Field(default=None, min_length=1, max_length=200)
    output: str | None = Field(default=None, min_length=1, max_length=200)
    policy: dict[str, Any] | str | None = None
    baseline: str = DEFAULT_BASELINE
    triggers: list[str] = Field(default_factory=lambda: [PUSH], max_length=2)
    promote_to: str | None = None


class ValidationSetup(BaseModel):
    """A model's validation setup as stored (and as ``GET .../validation`` shows it)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dataset: str
    labels: str | None = None
    output: str | None = None
    policy: dict[str, Any]
    baseline: str = DEFAULT_BASELINE
    triggers: list[str]
    promote_to: str | None = None
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def on_push(self) -> bool:
        return PUSH in self.triggers

    @property
    def on_alias(self) -> str | None:
        return next((t.removeprefix(ALIAS_PREFIX) for t in self.triggers if t.startswith(ALIAS_PREFIX)), None)

    def gates(self) -> Policy:
        return parse_policy(self.policy, "policy")


class JobView(BaseModel):
    """A validation job: what triggered it, where it stands, and (read one by one) its log."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    version: int
    trigger: str
    status: str  # queued, running, passed, failed, inconclusive, error, skipped
    reason: str = ""
    requested_by: str = ""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    validation_id: int | None = None
    promotion: str | None = None
    log: str | None = None  # None in listings


def parse_triggers(values: list[str]) -> tuple[bool, str | None]:
    """``["push", "alias:staging"]`` as (on push, the alias whose moves trigger)."""
    on_push, on_alias = False, None
    for value in values:
        if value == PUSH:
            on_push = True
        elif value.startswith(ALIAS_PREFIX) and on_alias is None:
            on_alias = _alias(value.removeprefix(ALIAS_PREFIX), "triggers")
        else:
            raise InvalidInput(
                f"invalid trigger {value!r}: 'push' or 'alias:NAME' (one alias at most)", field="triggers"
            )
    return on_push, on_alias


def _alias(value: str, field: str) -> str:
    try:
        return check_alias(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc.message}", field=field) from None


def checked_setup(name: str, request: SetupRequest, user: str = "") -> ValidationSetup:
    """``request`` checked whole: every field named when wrong, before anything is stored."""
    dataset = check_dataset_uri(request.dataset)
    baseline = _alias(request.baseline, "baseline")
    promote_to = _alias(request.promote_to, "promote_to") if request.promote_to is not None else None
    on_push, on_alias = parse_triggers(request.triggers)
    if on_alias is not None and on_alias in (baseline, promote_to):
        # A move of the baseline would compare it with itself; one of promote_to would trigger itself.
        raise InvalidInput(
            f"the trigger alias:{on_alias} must differ from the baseline and from promote_to",
            field="triggers",
        )
    for field, value in (("labels", request.labels), ("output", request.output)):
        check_text(value or "", field, 200)
    policy = _policy(request.policy)
    triggers = ([PUSH] if on_push else []) + ([f"{ALIAS_PREFIX}{on_alias}"] if on_alias else [])
    return ValidationSetup(
        name=name, dataset=dataset, labels=request.labels, output=request.output,
        policy=policy.model_dump(mode="json"), baseline=baseline, triggers=triggers,
        promote_to=promote_to, updated_by=check_text(user, "user", 200),
    )  # fmt: skip


def _policy(value: dict[str, Any] | str | None) -> Policy:
    if not isinstance(value, str):
        return parse_policy(value, "policy")
    if len(value.encode()) > MAX_POLICY_BYTES:
        raise InvalidInput(f"a policy is at most {MAX_POLICY_BYTES} bytes", field="policy")
    import yaml

    try:
        return parse_policy(yaml.safe_load(value), "policy")
    except yaml.YAMLError as exc:
        raise InvalidInput(f"policy: not valid YAML or JSON: {exc}", field="policy") from None


def check_dataset_uri(uri: str) -> str:
    """An absolute local path, or a URL of a :data:`DATASET_SCHEMES` scheme whose host is not a
    link-local or cloud metadata address; either ending in a data format's suffix. The suffix is
    read on the path alone: a query or a fragment (never sent) says nothing of what is fetched."""
    check_text(uri, "dataset", MAX_DATASET_URI)
    if Path(uri).is_absolute():
        path = uri
    elif "://" in uri:
        path = _checked_url(uri).path
    else:
        raise InvalidInput(
            f"dataset: {uri!r} is a relative path; the control plane reads it, so give an absolute"
            " path or a URL",
            field="dataset",
        )
    if _suffix(path) not in FORMATS:
        raise InvalidInput(
            f"dataset: {uri!r} has no data format's suffix ({', '.join(sorted(FORMATS))})", field="dataset"
        )
    return uri


def _checked_url(uri: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  # a port that is not a number raises here, not at the fetch
    except ValueError as exc:
        raise InvalidInput(f"dataset: {uri!r} is not a valid URL ({exc})", field="dataset") from None
    scheme = parts.scheme.lower()
    if scheme not in DATASET_SCHEMES:
        raise InvalidInput(
            f"dataset: URL scheme {scheme!r} is not allowed; use an absolute path or one of "
            f"{', '.join(sorted(DATASET_SCHEMES))}:// (never plain http)",
            field="dataset",
        )
    if scheme == "https" and (not parts.hostname or is_metadata_host(parts.hostname)):
        raise InvalidInput(
            f"dataset: {uri!r} names no host, or a link-local or cloud metadata address", field="dataset"
        )
    return parts


def _suffix(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


def check_dataset_host(uri: str, allow_private: bool = False) -> None:
    """Refuse an ``https`` dataset whose host resolves to an address of the control plane's own
    machine or networks: loopback, private and other non-global ranges (unless ``allow_private``),
    link-local and cloud metadata addresses (always). Run when the data is fetched, so a name
    that resolves elsewhere since the setup was stored is caught; IP literals in any spelling
    resolve to themselves."""
    parts = _checked_url(uri)
    if parts.scheme.lower() != "https":
        return
    host = parts.hostname or ""
    try:
        found = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"dataset: cannot resolve the host {host!r} ({exc})", field="dataset") from None
    for address in sorted({str(info[4][0]) for info in found}):
        refused = _internal(address, allow_private)
        if refused:
            raise InvalidInput(
                f"dataset: the host {host!r} is {refused} address ({address}), which a validation "
                "setup may not read" + ("" if "metadata" in refused else _ALLOW_PRIVATE),
                field="dataset",
            )


_ALLOW_PRIVATE = "; the control plane's allow_private_datasets setting allows it"


def _internal(address: str, allow_private: bool) -> str:
    """What kind of internal address ``address`` is ('' for a global one)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) aside
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if is_metadata_host(str(ip)):
        return "a link-local or cloud metadata"
    if allow_private:
        return ""
    if ip.is_loopback or ip.is_unspecified:
        return "a loopback"
    return "" if ip.is_global else "a private"


@contextlib.contextmanager
def dataset_file(uri: str, max_bytes: int, allow_private: bool = False) -> Iterator[Path]:
    """A local file holding the dataset ``uri`` names: the path itself, or a copy of what a URL
    names (through fsspec, as the registry reads its artifact store), at most ``max_bytes``,
    removed afterwards. The URL is checked again (:func:`check_dataset_uri`, a setup stored by an
    older version; :func:`check_dataset_host`), and an ``https`` server's redirects are not
    followed: they could lead anywhere the checks refuse."""
    check_dataset_uri(uri)
    if Path(uri).is_absolute():
        yield Path(uri)
        return
    check_dataset_host(uri, allow_private)
    import fsspec  # type: ignore[import-untyped]  # fsspec ships no type information

    options = {"allow_redirects": False} if urlsplit(uri).scheme.lower() == "https" else {}
    with tempfile.TemporaryDirectory(prefix="modelyard-data-") as folder:
        target = Path(folder) / f"dataset{_suffix(urlsplit(uri).path)}"
        try:
            with fsspec.open(uri, "rb", **options) as source, target.open("wb") as out:
                _copy(source, out, max_bytes)
        except FileNotFoundError:
            raise InvalidInput(f"dataset: {uri} does not exist", field="dataset") from None
        yield target


def _copy(source: Any, out: Any, max_bytes: int) -> None:
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > max_bytes:
            raise PayloadTooLarge(copied, max_bytes)
        out.write(chunk)
