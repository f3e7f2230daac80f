"""The plan: what ``apply`` will do to turn the current deployments into the desired ones (seed R9).

Per project/model, per version: RETAIN (same spec), ADD (only desired), UPDATE (spec differs; every
changed leaf field, old -> new) or DELETE (only current). ``render_plan`` prints it as the table of
``dploctl diff`` in seed 000 §3.5:

    PROJECT: mail  MODEL: spam
    ------------+---------+----------------
     APPLY WILL | VERSION | DIFF
    ------------+---------+----------------
     UPDATE     | v1      | - weight: 100
                |         | + weight: 80
     ADD        | v2      | + uri: spam/7
                |         | + weight: 20
    ------------+---------+----------------

    1 to add, 1 to update, 0 to delete, 0 unchanged

Pure: no I/O, no knowledge of any backend.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from modelyard.deploy.spec import DeployFile, Deployment, VersionSpec

__all__ = [
    "DRIFT_HEADING",
    "ORDER",
    "Action",
    "Drift",
    "FieldChange",
    "ModelPlan",
    "Plan",
    "VersionChange",
    "diff",
    "field_changes",
    "render_plan",
    "written_paths",
]

Leaf = str | int | float | bool


class Action(enum.StrEnum):
    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    RETAIN = "RETAIN"


# Within a model, versions are listed in the order apply carries them out, so the plan reads as what
# will happen: ADD first (a new version is started and ready before any traffic may move to it), then
# UPDATE (weights shift, changed versions roll over), then DELETE (a version goes only once traffic has
# left it); RETAIN last, since nothing happens to it. Within an action, the file's order is kept.
ORDER = (Action.ADD, Action.UPDATE, Action.DELETE, Action.RETAIN)


@dataclass(frozen=True)
class FieldChange:
    """One leaf field that changes: ``path`` is dotted (``resources.memory``, ``server.env.X``);
    ``None`` stands for "not set" (an optional field left out, an environment variable absent).

    ``old_written`` / ``new_written``: whether that side's file spelled the field out, rather than
    leaving it at its default. The plan prints only fields a file wrote (see :func:`render_plan`);
    they take no part in comparing changes."""

    path: str
    old: Leaf | None
    new: Leaf | None
    old_written: bool = field(default=True, compare=False)
    new_written: bool = field(default=True, compare=False)

    @property
    def shown(self) -> bool:
        """Whether the plan prints this change: a file wrote the field on at least one side."""
        return self.old_written or self.new_written


@dataclass(frozen=True)
class VersionChange:
    """What happens to one version. ``changes``: for UPDATE the fields that differ; for ADD (DELETE)
    the fields the added (deleted) version's file wrote away from their defaults, its ``uri`` first.
    ``desired`` / ``current``: the version's spec in each file, ``None`` where it is absent."""

    action: Action
    version: str
    changes: list[FieldChange] = field(default_factory=list)
    desired: VersionSpec | None = None
    current: VersionSpec | None = None


@dataclass(frozen=True)
class ModelPlan:
    project: str
    model: str
    versions: list[VersionChange]

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.model)


@dataclass(frozen=True)
class Drift:
    """Something changed live since the last apply (``modelyard route set``, a version that stopped
    running, one a failed apply left running): found by ``deploy/live.py``, listed before the plan.
    ``overwrite``: apply changes it (back) to what the file says; False when the file agrees."""

    project: str
    model: str
    message: str
    overwrite: bool = True

    def __str__(self) -> str:
        return f"{self.project}/{self.model}: {self.message}"


@dataclass(frozen=True)
class Plan:
    """Every project/model of either file, sorted; ``drift``: what changed live since the last
    apply (empty for a plan between two files)."""

    models: list[ModelPlan]
    drift: list[Drift] = field(default_factory=list)

    @property
    def counts(self) -> dict[Action, int]:
        """How many versions each action applies to (every action present, 0 if none)."""
        counts = dict.fromkeys(Action, 0)
        for model in self.models:
            for version in model.versions:
                counts[version.action] += 1
        return counts

    @property
    def empty(self) -> bool:
        """True when apply has nothing to do: every version is RETAIN, and no live change is to be
        overwritten (a weight ``route set`` gave a version the file does not list, say)."""
        versions = all(v.action is Action.RETAIN for m in self.models for v in m.versions)
        return versions and not any(d.overwrite for d in self.drift)

    @property
    def summary(self) -> str:
        c = self.counts
        return (
            f"{c[Action.ADD]} to add, {c[Action.UPDATE]} to update, "
            f"{c[Action.DELETE]} to delete, {c[Action.RETAIN]} unchanged"
        )


def diff(desired: DeployFile, current: DeployFile) -> Plan:
    """The plan that turns ``current`` (what runs) into ``desired`` (the file)."""
    want = {d.key: d for d in desired.deployments}
    have = {d.key: d for d in current.deployments}
    keys = sorted(want.keys() | have.keys())
    return Plan([_model_plan(key, want.get(key), have.get(key)) for key in keys])


def _model_plan(key: tuple[str, str], want: Deployment | None, have: Deployment | None) -> ModelPlan:
    desired = {v.version: v.spec for v in want.versions} if want else {}
    current = {v.version: v.spec for v in have.versions} if have else {}
    versions: list[VersionChange] = []
    for version, spec in desired.items():
        old = current.get(version)
        if old is None:
            added = [FieldChange(path, None, value) for path, value in _written_fields(spec).items()]
            versions.append(VersionChange(Action.ADD, version, added, desired=spec))
            continue
        changes = field_changes(old, spec)
        action = Action.UPDATE if changes else Action.RETAIN
        versions.append(VersionChange(action, version, changes, desired=spec, current=old))
    for version, old in current.items():
        if version not in desired:
            deleted = [FieldChange(path, value, None) for path, value in _written_fields(old).items()]
            versions.append(VersionChange(Action.DELETE, version, deleted, current=old))
    versions.sort(key=lambda v: ORDER.index(v.action))  # stable: file order within an action
    return ModelPlan(key[0], key[1], versions)


def field_changes(old: VersionSpec, new: VersionSpec) -> list[FieldChange]:
    """Every leaf field whose value differs, in the order the spec declares its fields (a mapping's
    keys, such as ``server.env``: the new ones in their order, then the removed ones)."""
    old_written, new_written = written_paths(old), written_paths(new)
    return [
        FieldChange(path, before, after, path in old_written, path in new_written)
        for path, before, after in _pairs(old.model_dump(), new.model_dump())
        if before != after
    ]


def written_paths(model: BaseModel, prefix: str = "") -> set[str]:
    """The dotted paths of the leaves ``model``'s document spelled out (pydantic's fields set):
    ``autoscaling: {min_replicas: 1, max_replicas: 3}`` wrote those two, not the
    ``autoscaling.target_cpu_percent`` that defaults to 70. Every key of a mapping field it wrote
    (``server.env``) counts as written."""
    paths: set[str] = set()
    for name in model.model_fields_set:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            paths |= written_paths(value, f"{path}.")
        elif isinstance(value, Mapping):
            paths |= {f"{path}.{key}" for key in value}
        else:
            paths.add(path)
    return paths


def _written_fields(spec: VersionSpec) -> dict[str, Leaf]:
    """The leaves the spec's file wrote with a value other than their default, ``uri`` first."""
    written = written_paths(spec)
    defaults = VersionSpec(uri=spec.uri).model_dump()
    leaves = {
        path: value
        for path, default, value in _pairs(defaults, spec.model_dump())
        if path in written and value != default and value is not None
    }
    return {"uri": spec.uri} | leaves


def _pairs(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, Any, Any]]:
    """``(dotted path, old leaf, new leaf)`` for every leaf of either side, ``None`` where a side has
    none: ``{"resources": {"cpu": 1}}`` has the leaf ``resources.cpu``; ``None`` stands for an
    optional model (``autoscaling``) that is not set, as if it were an empty mapping."""
    for key in dict.fromkeys([*new, *old]):
        before, after = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(before, Mapping) or isinstance(after, Mapping):
            yield from _pairs(before or {}, after or {}, f"{path}.")
        else:
            yield path, before, after


# --- rendering -------------------------------------------------------------------------------------

_HEAD = ("APPLY WILL", "VERSION", "DIFF")


def render_plan(plan: Plan) -> str:
    """The plan as plain text: what changed live (if anything), a table per project/model, then the
    summary line."""
    blocks = [_render_model(model) for model in plan.models]
    if plan.drift:
        blocks.insert(0, "\n".join([DRIFT_HEADING, *(f"  {item}" for item in plan.drift)]))
    return "\n\n".join([*blocks, plan.summary]) + "\n"


DRIFT_HEADING = "DRIFT (the live state differs from the last apply):"


def _render_model(model: ModelPlan) -> str:
    rows: list[tuple[str, str, str]] = []
    for change in model.versions:
        lines = _diff_lines(change.changes) or [""]
        rows.append((change.action.value, change.version, lines[0]))
        rows.extend(("", "", line) for line in lines[1:])
    widths = [max(len(row[i]) for row in [_HEAD, *rows]) for i in range(3)]
    rule = "+".join("-" * (width + 2) for width in widths)

    def row(cells: tuple[str, str, str]) -> str:
        return " " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    body = [row(r).rstrip() for r in rows]
    head = f"PROJECT: {model.project}  MODEL: {model.model}"
    return "\n".join([head, rule, row(_HEAD).rstrip(), rule, *body, rule])


def _diff_lines(changes: list[FieldChange]) -> list[str]:
    """``- path: old`` and ``+ path: new`` for every change a file wrote on either side (a default
    neither side wrote, such as the ``target_cpu_percent`` of a new ``autoscaling``, has no line);
    a side that is not set has no line."""
    lines: list[str] = []
    for change in changes:
        if not change.shown:
            continue
        if change.old is not None:
            lines.append(f"- {change.path}: {_show(change.old)}")
        if change.new is not None:
            lines.append(f"+ {change.path}: {_show(change.new)}")
    return lines


def _show(value: Leaf) -> str:
    """A value as YAML would spell it: true/false, numbers as is, strings bare unless ambiguous."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (value != value.strip() or not value or _looks_typed(value)):
        return json.dumps(value)
    return str(value)


def _looks_typed(text: str) -> bool:
    """Whether a bare string would read as a number, boolean or null (``"1"`` vs ``1``)."""
    try:
        return not isinstance(yaml.safe_load(text), str)
    except yaml.YAMLError:
        return True
