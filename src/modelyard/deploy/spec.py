"""The deploy file: what should run, per project / model / version (seed R9; docs/deploy.md).

```yaml
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {uri: spam@production, replicas: 2, resources: {cpu: 1, memory: 1Gi}, weight: 80}
  - version: v2
    spec: {uri: spam/7, replicas: 1, weight: 20, batching: {max_batch_size: 32}}
```

Transport-free and I/O-free: these models validate a parsed document; ``deploy/file.py`` reads the
YAML and turns validation errors into messages naming the line and the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "COMPARE_KINDS",
    "Autoscaling",
    "Batching",
    "CompareKind",
    "DeployFile",
    "Deployment",
    "LivenessProbe",
    "Probe",
    "Probes",
    "ReplicaGate",
    "Resources",
    "Rollout",
    "RolloutCompare",
    "RolloutGates",
    "RolloutStep",
    "ServerSettings",
    "StartupProbe",
    "VersionDeployment",
    "VersionSpec",
]

# The gateway's rule for names in URL paths (routing/table.py NAME_PATTERN), restated here so the
# deploy plane does not import the gateway just to validate a file.
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=_NAME)]
# Kubernetes quantities: "500m", "1", "1.5" CPUs; "512Mi", "1Gi", "1G", "1000000" bytes.
# Matched with fullmatch: "$" alone would also accept a trailing newline ("1Gi\n").
_CPU = re.compile(r"([0-9]+(\.[0-9]+)?|[0-9]+m)")
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?")


def _as_written(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a number as a float, but keep a whole number written without a point an int: the
    plan then shows ``cpu: 2`` as ``2``, not ``2.0`` (equal either way: ``2 == 2.0``). ``true`` and
    ``false`` are refused rather than read as 1 and 0."""
    if isinstance(value, bool):
        spelled = "true" if value else "false"
        raise PydanticCustomError("float_type", "Input should be a number, not {value}", {"value": spelled})
    number = handler(value)
    return value if type(value) is int else number


def _unchanged(value: float) -> Any:  # Any: no float check on the way out
    return value


# A float that remembers whether the file spelled it as an int (mypy accepts an int for a float);
# serialised as it is, so the JSON of a spec keeps the spelling too (and pydantic does not warn that
# an int is not a float inside a union such as ``cpu``'s).
Number = Annotated[float, WrapValidator(_as_written), PlainSerializer(_unchanged)]


def _error_at(at: tuple[str | int, ...], reason: str) -> PydanticCustomError:
    """A model-level error about one of the model's parts: ``at`` is that part's path below the model,
    which ``deploy/file.py`` appends to the error's location so the message names its line."""
    return PydanticCustomError("invalid", "{reason}", {"reason": reason, "at": at})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """Requests (and limits) per replica. ``cpu`` in cores or millicores, ``memory`` in bytes with
    Kubernetes suffixes, ``gpu`` a whole number of devices."""

    cpu: str | Number | None = None
    memory: str | None = None
    gpu: int = Field(default=0, ge=0)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object) -> object:
        # Before the union's own checks, so a bad value gets one message rather than one per type.
        valid = isinstance(value, str | int | float) and not isinstance(value, bool)
        if value is not None and (
            not valid or not _CPU.fullmatch(str(value)) or float(str(value).rstrip("m")) <= 0
        ):
            raise ValueError(
                f"cpu {value!r} must be a positive number of cores (1, 0.5) or millicores (500m)"
            )
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value):
            raise ValueError(f"memory {value!r} must be bytes with an optional suffix (512Mi, 1Gi, 1G)")
        return value


class Autoscaling(_Strict):
    """Replica bounds and the target the autoscaler keeps (CPU utilisation percent)."""

    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    target_cpu_percent: int = Field(default=70, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class Batching(_Strict):
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: Number | None = Field(default=None, ge=0)


class ServerSettings(_Strict):
    """What the replica's ``modelyard serve`` gets: threads, queue, environment variables."""

    intra_op_threads: int | None = Field(default=None, ge=0)
    max_queue: int | None = Field(default=None, ge=1)
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _env(self) -> ServerSettings:
        # A name or value no process can be given would fail the replica's start, not the file.
        # (Kubernetes is stricter still: its renderer checks its own rule.)
        for name, value in self.env.items():
            if not name or "=" in name or "\x00" in name:
                raise _error_at(("env", name), f"{name!r} is not a variable name: empty, or holds '=' or NUL")
            if "\x00" in value:
                raise _error_at(("env", name), "an environment value cannot hold a NUL character")
        return self


class Probe(_Strict):
    period_s: Number = Field(default=5, gt=0)
    timeout_s: Number = Field(default=2, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    initial_delay_s: Number = Field(default=0, ge=0)


class StartupProbe(Probe):
    """Its own defaults per field, so ``startup: {period_s: 1}`` keeps the 60 failures allowed."""

    period_s: Number = Field(default=2, gt=0)
    failure_threshold: int = Field(default=60, ge=1)


class LivenessProbe(Probe):
    period_s: Number = Field(default=10, gt=0)


class Probes(_Strict):
    """Timings of the probes wired to the server's /health/{startup,ready,live}."""

    startup: StartupProbe = Field(default_factory=StartupProbe)
    readiness: Probe = Field(default_factory=Probe)
    liveness: LivenessProbe = Field(default_factory=LivenessProbe)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION_S = 7 * 86400.0


def _seconds(value: object) -> object:
    """``"500ms"``, ``"2s"``, ``"5m"``, ``"1h"`` or a bare number of seconds, as seconds."""
    if isinstance(value, str) and (found := _DURATION.fullmatch(value.strip())):
        return float(found.group(1)) * _UNIT_S[found.group(2)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError(f"{value!r} is not a duration: write 500ms, 2s, 5m, 1h or a number of seconds")


# Seconds, from a number or a string with a unit; bounded so that timestamps never overflow.
Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=MAX_DURATION_S)]


class RolloutStep(_Strict):
    """One step of a rollout: ``{mirror: 1.0, for: 5m}`` copies that share of the requests to the
    candidate (users get the baseline's answers), ``{weight: 5, for: 10m}`` sends the candidate that
    percent of the baseline's traffic. ``for``: how long the step gathers evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    weight: int | None = Field(default=None, ge=1, le=99)
    mirror: Number | None = Field(default=None, gt=0, le=1)
    duration: Duration = Field(alias="for")

    @model_validator(mode="after")
    def _one_kind(self) -> RolloutStep:
        if (self.weight is None) == (self.mirror is None):
            raise ValueError("a step gives either weight (percent) or mirror (a fraction), not both")
        return self

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """As a file writes it, ``{mirror: 1.0, for: 300.0}`` (seconds): what a plan shows."""
        data = handler(self)
        seconds = data.pop("duration", None)
        seconds = data.pop("for", seconds)
        return {**{k: v for k, v in data.items() if v is not None}, "for": seconds}


class RolloutGates(_Strict):
    """What a step must show before the next: read from the step's own evidence. ``min_requests``:
    answers needed (compared ones in a mirror step, the candidate's in a weight step) before any
    gate is read; fewer by the step's end is *inconclusive*, never a pass."""

    min_requests: int = Field(default=100, ge=1)
    max_error_rate: Number | None = Field(default=None, ge=0, le=1)
    max_p99_ratio: Number | None = Field(default=None, gt=0)  # candidate p99 / baseline p99
    min_agreement: Number | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _some_gate(self) -> RolloutGates:
        if self.max_error_rate is None and self.max_p99_ratio is None and self.min_agreement is None:
            raise ValueError("give at least one gate: max_error_rate, max_p99_ratio or min_agreement")
        return self


class ReplicaGate(_Strict):
    """How an update in place of a version's replicas is gated (docs/rollout.md, "Replica by
    replica"): one new replica starts first and is watched ``for`` this long against its old
    siblings; then the rest follow, or it is stopped and the old replicas go on. ``min_requests``:
    answers the new replica must have given by then (fewer is inconclusive, which fails);
    ``max_error_rate``: how far its error rate may exceed its siblings'; ``max_p99_ratio``: its p99
    latency over its siblings' (the median of theirs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    duration: Duration = Field(alias="for")
    min_requests: int = Field(default=50, ge=1)
    max_error_rate: Number | None = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: Number | None = Field(default=None, gt=0)


# How an output is compared: the kinds of ``modelyard.validation.compare.Kind``, restated so that the
# deploy plane does not import validation (and numpy) to read a file; a test keeps the two equal.
CompareKind = Literal["label", "scores", "numeric", "exact"]
COMPARE_KINDS: tuple[str, ...] = ("label", "scores", "numeric", "exact")


class RolloutCompare(_Strict):
    """How the candidate's answers are compared with the baseline's (the online analysis's
    comparison, docs/validation.md): two numbers agree when ``|c - b| <= abs_tol + rel_tol * |b|``;
    ``outputs`` sets how a named output is compared (otherwise guessed from the baseline's answer).
    The defaults are the validation policy's."""

    abs_tol: Number = Field(default=1e-6, ge=0, allow_inf_nan=False)
    rel_tol: Number = Field(default=1e-5, ge=0, allow_inf_nan=False)
    outputs: dict[str, CompareKind] = Field(default_factory=dict)


class Rollout(_Strict):
    """How a version takes traffic from ``baseline`` (docs/rollout.md). ``canary``: the steps in
    order, then 100 %; ``blue-green``: mirror steps only, then 100 % at once. After promotion the
    baseline stays ready, at weight 0, for ``keep_baseline_for`` (blue-green default 10 minutes),
    while the candidate is still watched: a failure then returns traffic to the baseline at once.
    ``on_failure``: ``rollback`` (traffic back to the baseline) or ``pause`` (the same traffic,
    then wait for ``deploy promote`` or ``deploy abort``). ``evidence_timeout``: how long the gates
    may stay unreadable (the analysis cannot read the log) before that counts as a failure.
    ``compare``: how the candidate's answers are compared with the baseline's (agreement)."""

    strategy: Literal["canary", "blue-green"] = "canary"
    baseline: Name
    steps: list[RolloutStep] = Field(min_length=1, max_length=50)
    gates: RolloutGates
    on_failure: Literal["rollback", "pause"] = "rollback"
    keep_baseline_for: Duration | None = None
    evidence_timeout: Duration = 60.0
    compare: RolloutCompare = Field(default_factory=RolloutCompare)

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``compare`` while it is the default: a rollout is known by its spec, hashed, and
        one started before the block existed must keep its fingerprint."""
        data: dict[str, Any] = handler(self)
        if self.compare == RolloutCompare():
            data.pop("compare", None)
        return data

    @model_validator(mode="after")
    def _blue_green(self) -> Rollout:
        if self.strategy == "blue-green":
            for index, step in enumerate(self.steps):
                if step.weight is not None:
                    raise _error_at(
                        ("steps", index, "weight"),
                        "blue-green moves all traffic at once: its steps are mirror steps",
                    )
        return self

    @property
    def hold_s(self) -> float:
        """How long the baseline stays ready after promotion (seconds, 0 for none)."""
        if self.keep_baseline_for is not None:
            return self.keep_baseline_for
        return 600.0 if self.strategy == "blue-green" else 0.0


class VersionSpec(_Strict):
    """How one version runs. ``uri``: a registry alias (``spam@production``), a registry version
    (``spam/7``) or a package path (``dist/spam-1.modelyard``)."""

    uri: str = Field(min_length=1)
    replicas: int | None = Field(default=None, ge=0)
    autoscaling: Autoscaling | None = None
    resources: Resources = Field(default_factory=Resources)
    weight: int = Field(default=0, ge=0)
    mirror: Number | bool = False  # true: every request; a fraction in (0, 1]: that share
    batching: Batching = Field(default_factory=Batching)
    server: ServerSettings = Field(default_factory=ServerSettings)
    probes: Probes = Field(default_factory=Probes)
    image: str | None = None  # Kubernetes: the image to run (default: built from the package)
    rollout: Rollout | None = None  # its traffic moves step by step from a baseline (docs/rollout.md)
    replica_gate: ReplicaGate | None = None  # an update in place goes one gated replica first

    @model_validator(mode="after")
    def _scaling(self) -> VersionSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise _error_at(("autoscaling",), "give either replicas or autoscaling, not both")
        return self

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("uri must not contain control characters (a newline, a NUL...)")
        return value

    @field_validator("mirror")
    @classmethod
    def _mirror(cls, value: float | bool) -> float | bool:
        if not isinstance(value, bool) and not 0 < value <= 1:
            raise ValueError(f"mirror {value!r} must be true, false or a fraction in (0, 1]")
        return value

    @property
    def mirror_fraction(self) -> float | None:
        """The share of requests mirrored to this version, None when it is not a mirror."""
        if self.mirror is True:
            return 1.0
        if self.mirror is False:
            return None
        return float(self.mirror)

    @property
    def min_replicas(self) -> int:
        if self.autoscaling is not None:
            return self.autoscaling.min_replicas
        return 1 if self.replicas is None else self.replicas


class VersionDeployment(_Strict):
    version: Name
    spec: VersionSpec


class Deployment(_Strict):
    project: Name
    model: Name
    versions: list[VersionDeployment] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_versions(self) -> Deployment:
        seen: dict[str, int] = {}
        for index, version in enumerate(self.versions):
            if version.version in seen:
                first = seen[version.version]
                raise _error_at(
                    ("versions", index, "version"),
                    f"version {version.version!r} is listed twice (first as versions[{first}])",
                )
            seen[version.version] = index
        if not any(v.spec.weight > 0 for v in self.versions) and any(
            v.spec.mirror_fraction is None for v in self.versions
        ):
            raise ValueError(f"{self.project}/{self.model}: no version has a weight above 0")
        self._check_rollout()
        return self

    def _check_rollout(self) -> None:
        """At most one version rolls out, from a weighted version of the same model, and its own
        traffic is the rollout's to move (weight 0, no mirror in the file)."""
        rolling = [(i, v) for i, v in enumerate(self.versions) if v.spec.rollout is not None]
        if len(rolling) > 1:
            raise _error_at(
                ("versions", rolling[1][0], "spec", "rollout"), "only one version may roll out at a time"
            )
        if not rolling:
            return
        index, candidate = rolling[0]
        assert candidate.spec.rollout is not None
        at = ("versions", index, "spec")
        if candidate.spec.weight or candidate.spec.mirror_fraction is not None:
            raise _error_at(
                at, "a version with a rollout gets its traffic from it: leave weight and mirror out"
            )
        baseline = candidate.spec.rollout.baseline
        found = next((v for v in self.versions if v.version == baseline), None)
        if found is None or found is candidate or found.spec.weight == 0:
            raise _error_at(
                (*at, "rollout", "baseline"),
                f"baseline {baseline!r} must be another version of {self.project}/{self.model}"
                " with a weight above 0",
            )

    @property
    def rollout_version(self) -> VersionDeployment | None:
        """The version that carries a rollout, if one does."""
        return next((v for v in self.versions if v.spec.rollout is not None), None)

    @property
    def steered(self) -> frozenset[str]:
        """The versions whose traffic a rollout moves (the candidate and its baseline), not the file."""
        candidate = self.rollout_version
        if candidate is None or candidate.spec.rollout is None:
            return frozenset()
        return frozenset({candidate.version, candidate.spec.rollout.baseline})

    @property
    def key(self) -> tuple[str, str]:
        return (self.project, self.model)


class DeployFile(_Strict):
    """The whole file: a list of deployments, each project/model at most once."""

    api_version: Literal["modelyard/v1"] = Field(default="modelyard/v1", alias="apiVersion")
    deployments: list[Deployment] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unique_models(self) -> DeployFile:
        seen: dict[tuple[str, str], int] = {}
        for index, deployment in enumerate(self.deployments):
            if deployment.key in seen:
                name = f"{deployment.project}/{deployment.model}"
                raise _error_at(
                    ("deployments", index),
                    f"{name} is listed twice (first as deployments[{seen[deployment.key]}])",
                )
            seen[deployment.key] = index
        return self
