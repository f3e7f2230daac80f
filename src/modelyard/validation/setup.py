"""A registered model's validation setup, and the jobs that run it: the API's value objects, the
checks a setup must pass, and the dataset read from where the setup says.

A setup names the dataset (an absolute local path, or any fsspec URL: ``s3://bucket/holdout.npz``,
``gs://...``, ``memory://...``), the label column, the policy (the gates of ``modelyard validate``),
the baseline alias (default ``production``), the triggers (``push``: every new version;
``alias:staging``: every move of that alias) and ``promote_to``, the alias a pass moves (unset: the
verdict is only recorded).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.registry.refs import check_alias, check_text
from modelyard.validation.data import FORMATS
from modelyard.validation.policy import MAX_POLICY_BYTES, Policy, parse_policy

__all__ = [
    "DEFAULT_BASELINE",
    "MAX_DATASET_URI",
    "JobView",
    "SetupRequest",
    "ValidationSetup",
    "checked_setup",
    "dataset_file",
    "parse_triggers",
]

DEFAULT_BASELINE = "production"
MAX_DATASET_URI = 1000
PUSH = "push"
ALIAS_PREFIX = "alias:"


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
    """An absolute local path, or a URL of a filesystem fsspec knows, ending in a data format's suffix."""
    check_text(uri, "dataset", MAX_DATASET_URI)
    protocol, sep, rest = uri.partition("://")
    if sep:
        import fsspec  # type: ignore[import-untyped]  # fsspec ships no type information

        if protocol not in fsspec.available_protocols():
            raise InvalidInput(f"dataset: unknown URL scheme {protocol!r}", field="dataset")
        path = rest
    else:
        if not Path(uri).is_absolute():
            raise InvalidInput(
                f"dataset: {uri!r} is a relative path; the control plane reads it, so give an absolute"
                " path or a URL",
                field="dataset",
            )
        path = uri
    suffix = PurePosixPath(path.split("?", 1)[0]).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(
            f"dataset: {uri!r} has no data format's suffix ({', '.join(sorted(FORMATS))})", field="dataset"
        )
    return uri


@contextlib.contextmanager
def dataset_file(uri: str, max_bytes: int) -> Iterator[Path]:
    """A local file holding the dataset ``uri`` names: the path itself, or a copy of what a URL
    names (through fsspec, as the registry reads its artifact store), at most ``max_bytes``,
    removed afterwards."""
    protocol, sep, _ = uri.partition("://")
    if not sep or protocol in ("file", "local"):
        yield Path(uri.partition("://")[2] if sep else uri)
        return
    import fsspec

    suffix = PurePosixPath(uri.split("?", 1)[0]).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="modelyard-data-") as folder:
        target = Path(folder) / f"dataset{suffix}"
        try:
            with fsspec.open(uri, "rb") as source, target.open("wb") as out:
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
