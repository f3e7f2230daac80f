"""The package manifest: what a ``.modelyard`` file holds and how to serve it (``manifest.json``)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)

from modelyard.sdk import ModelMetadata, TensorSpec

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "PACKAGE_SUFFIX",
    "RUNTIMES",
    "Manifest",
    "Signature",
    "Tensor",
    "check_member_path",
    "check_requirement",
]

FORMAT_VERSION = 1
PACKAGE_SUFFIX = ".modelyard"
MANIFEST_NAME = "manifest.json"
RUNTIMES = ("onnx", "sklearn", "torchscript", "torch_export")

_SHA256 = re.compile(r"[0-9a-f]{64}")
# ``name[extras]==version[; marker]``, as pin_requirements writes it. Requirements reach pip (argv and
# requirements.txt), so nothing else gets through: no options ('-...', or ' -' anywhere: pip reads
# the rest of a requirements.txt line as options), no URLs, no '#', '$', '\\' or line breaks.
_REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"==[A-Za-z0-9][A-Za-z0-9.+!_-]*"
    r"(?:; (?!-)(?:[A-Za-z0-9_.'\"<>=!~(),*+]|-|(?<! ) (?!-))+)?"
)
_FRAMEWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]*")
_ENTRY = re.compile(r"[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*|modelyard(\.[A-Za-z_]\w*)+:[A-Za-z_]\w*")


def check_member_path(path: str) -> str | None:
    """Why ``path`` is not a safe relative path inside a package (None when it is)."""
    if not path or path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        return "is absolute or empty"
    if "\\" in path or "\x00" in path:
        return "contains a backslash or a NUL byte"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    return None


def check_requirement(requirement: str) -> str | None:
    """Why ``requirement`` is not a pinned ``name[extras]==version[; marker]`` line (None when it is)."""
    if len(requirement) > 1000 or not _REQUIREMENT.fullmatch(requirement):
        return "is not a pinned requirement (name[extras]==version[; marker]; no options, URLs or spaces)"
    return None


def _tensor(value: object) -> TensorSpec:
    """A manifest's ``{"name", "datatype", "shape"}`` as the SDK's :class:`TensorSpec` (one type for
    a tensor everywhere); its checks (non-empty name, an OIP datatype, dims >= -1) are the manifest's."""
    if isinstance(value, TensorSpec):
        return value
    if not isinstance(value, dict) or set(value) != {"name", "datatype", "shape"}:
        raise ValueError("a tensor is an object with exactly the keys name, datatype and shape")
    name, datatype, shape = value["name"], value["datatype"], value["shape"]
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
        raise ValueError("a tensor's name and datatype are strings and its shape a list of integers")
    if not all(isinstance(dim, int) and not isinstance(dim, bool) for dim in shape):
        raise ValueError(f"tensor {name!r}: shape must be a list of integers")
    return TensorSpec(name, datatype, shape)


# A tensor in the manifest: the SDK's TensorSpec, read from and written as its JSON object.
Tensor = Annotated[TensorSpec, PlainValidator(_tensor), PlainSerializer(lambda spec: spec.to_dict())]


class Signature(BaseModel):
    """The model's inputs and outputs; empty lists mean "not declared" (any named tensors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[Tensor] = Field(default_factory=list)
    outputs: list[Tensor] = Field(default_factory=list)

    @classmethod
    def of(cls, metadata: ModelMetadata) -> Signature:
        """The signature a model declares in its metadata."""
        return cls(inputs=list(metadata.inputs), outputs=list(metadata.outputs))


class Manifest(BaseModel):
    """``manifest.json``: identity, how to serve, what it needs, and a SHA-256 for every file.

    Exactly one of ``entry`` (``model.py:ClassName`` in the package, or a ``modelyard.*`` class)
    and ``runtime`` (with ``model_file``) says how the model is served. ``files`` maps every path
    under ``files/`` in the archive to the SHA-256 of its bytes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    # Safe in file names, URLs and Dockerfiles: <name>-<version>.modelyard is written unquoted.
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    version: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    entry: str | None = None
    runtime: Literal["onnx", "sklearn", "torchscript", "torch_export"] | None = None
    model_file: str | None = None
    signature: Signature = Field(default_factory=Signature)
    requirements: list[str] = Field(default_factory=list)
    framework: dict[str, str] = Field(default_factory=dict)
    author: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: str
    files: dict[str, str]

    @field_validator("created_at")
    @classmethod
    def _iso_8601(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"created_at must be an ISO 8601 time, got {value!r}") from None
        return value

    @field_validator("requirements")
    @classmethod
    def _pinned_requirements(cls, requirements: list[str]) -> list[str]:
        for requirement in requirements:
            problem = check_requirement(requirement)
            if problem:
                raise ValueError(f"requirements: {requirement!r} {problem}")
        return requirements

    @field_validator("framework")
    @classmethod
    def _framework_versions(cls, framework: dict[str, str]) -> dict[str, str]:
        for name, version in framework.items():
            if len(name) > 100 or not _FRAMEWORK_NAME.fullmatch(name):
                raise ValueError(f"framework: {name!r} is not a package name")
            if len(version) > 100 or not _VERSION.fullmatch(version):
                raise ValueError(f"framework: {name}={version!r} is not a version")
        return framework

    @field_validator("files")
    @classmethod
    def _safe_files(cls, files: dict[str, str]) -> dict[str, str]:
        folded: dict[str, str] = {}  # as a case-insensitive or normalising file system sees the paths
        for path, digest in files.items():
            problem = check_member_path(path)
            if problem:
                raise ValueError(f"files: {path!r} {problem}")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"files: {path!r} has no lower-case hex SHA-256 ({digest!r})")
            key = unicodedata.normalize("NFC", path).casefold()
            if key in folded:
                raise ValueError(f"files: {path!r} and {folded[key]!r} differ only in case or Unicode form")
            folded[key] = path
        for key, path in folded.items():
            parts = key.split("/")
            for end in range(1, len(parts)):
                parent = folded.get("/".join(parts[:end]))
                if parent is not None:
                    raise ValueError(f"files: {parent!r} is a file, so {path!r} cannot be inside it")
        return files

    @model_validator(mode="after")
    def _how_to_serve(self) -> Manifest:
        if (self.entry is None) == (self.runtime is None):
            raise ValueError("exactly one of 'entry' and 'runtime' must be set")
        if self.entry is not None:
            if not _ENTRY.fullmatch(self.entry):
                raise ValueError(f"entry must be 'file.py:ClassName', got {self.entry!r}")
            source = self.entry.rpartition(":")[0]
            if source.endswith(".py") and source not in self.files:
                raise ValueError(f"entry file {source!r} is not in files")
        if self.runtime is not None and (self.model_file is None or self.model_file not in self.files):
            raise ValueError(f"runtime {self.runtime!r} needs a model_file that is in files")
        return self

    @property
    def entry_is_module(self) -> bool:
        """True for an entry that names a class in modelyard itself (``modelyard.x:Cls``)."""
        return self.entry is not None and not self.entry.rpartition(":")[0].endswith(".py")
