"""``build_package``: a model directory (or one model file) -> one versioned ``.modelyard`` file.

What is served, in order of precedence: ``entry``/``model_file`` given by the caller, then
``modelyard.yaml``, then what the directory holds: exactly one model file of a known format
(``.onnx``, ``.joblib``, ``.pt2``...), else a ``model.py`` defining exactly one ``@model`` class.
"""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard.errors import PackageInvalid
from modelyard.package.archive import sha256_file, write_package
from modelyard.package.manifest import PACKAGE_SUFFIX, Manifest, Signature
from modelyard.package.requirements import parse_requirements_file, pin_requirements
from modelyard.package.signatures import entry_signature, runtime_signature
from modelyard.runtimes.formats import SUFFIXES

__all__ = ["CONFIG_NAME", "BuildConfig", "build_package", "collect_files", "created_at_now"]

CONFIG_NAME = "modelyard.yaml"
_JUNK_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv"}
_JUNK_SUFFIXES = (".pyc", ".pyo", PACKAGE_SUFFIX)
_FRAMEWORKS = {"onnx": ("onnxruntime",), "sklearn": ("scikit-learn", "joblib"), "torchscript": ("torch",)}


class BuildConfig(BaseModel):
    """``modelyard.yaml``: every key optional; command-line options override it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    entry: str | None = None
    model_file: str | None = None
    requirements: list[str] | None = None
    author: str | None = None
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value  # `version: 2` in YAML


def load_build_config(root: Path) -> BuildConfig:
    """``root/modelyard.yaml`` validated, or an empty config when there is none."""
    path = root / CONFIG_NAME
    if not path.is_file():
        return BuildConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return BuildConfig.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise PackageInvalid(f"{CONFIG_NAME} is invalid: {exc}", field=CONFIG_NAME) from None


def created_at_now() -> str:
    """Now in UTC (ISO 8601, seconds), or ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _is_junk(rel: Path) -> bool:
    return any(part in _JUNK_DIRS for part in rel.parts) or rel.name.endswith(_JUNK_SUFFIXES)


def collect_files(root: Path, skip: Sequence[Path] = ()) -> dict[str, Path]:
    """Every file under ``root`` by POSIX relative path, without junk, ``*.modelyard`` or ``skip``."""
    skipped = {p.resolve() for p in skip}
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if _is_junk(rel) or path.resolve() in skipped:
            continue
        if path.is_symlink():
            raise PackageInvalid(
                f"{rel.as_posix()} is a symbolic link; copy the file in instead", field=str(rel)
            )
        if path.is_file():
            files[rel.as_posix()] = path
    if not files:
        raise PackageInvalid(f"{root} holds no files to package", field=str(root))
    return files


def _framework(runtime: str | None) -> dict[str, str]:
    found = {"python": platform.python_version()}
    names = _FRAMEWORKS.get(runtime or "", ("torch",) if runtime == "torch_export" else ())
    for name in (*names, "modelyard"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _requirements(root: Path, given: Sequence[str] | None, config: BuildConfig) -> list[str]:
    if given is not None:
        return pin_requirements(given, "--requirement")
    if config.requirements is not None:
        return pin_requirements(config.requirements, CONFIG_NAME)
    path = root / "requirements.txt"
    if path.is_file():
        return pin_requirements(parse_requirements_file(path), "requirements.txt")
    return []


def _served(
    root: Path, files: Mapping[str, Path], entry: str | None, model_file: str | None
) -> tuple[str | None, str | None]:
    """``(entry, model_file)``: exactly one is set (see the module docstring)."""
    if entry is not None or model_file is not None:
        return entry, model_file
    models = [rel for rel in files if Path(rel).suffix.lower() in SUFFIXES]
    if len(models) == 1:
        return None, models[0]
    if len(models) > 1:
        raise PackageInvalid(
            f"{root} holds several model files ({', '.join(models)}):"
            f" set model_file or entry in {CONFIG_NAME}",
            field=CONFIG_NAME,
        )
    if "model.py" in files:
        return "model.py", None  # the class is found when the module is read (entry_signature)
    raise PackageInvalid(
        f"{root} holds no model file ({', '.join(sorted(SUFFIXES))}) and no model.py;"
        f" set entry in {CONFIG_NAME}",
        field=CONFIG_NAME,
    )


def _output_path(out: Path | None, name: str, version: str) -> Path:
    filename = f"{name}-{version}{PACKAGE_SUFFIX}"
    if out is None:
        return Path.cwd() / filename
    # A path naming a .modelyard file is the file; anything else is a directory to write it in.
    return out if out.name.endswith(PACKAGE_SUFFIX) and not out.is_dir() else out / filename


def build_package(
    source: Path,
    out: Path | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    entry: str | None = None,
    model_file: str | None = None,
    requirements: Sequence[str] | None = None,
    author: str | None = None,
    description: str | None = None,
    labels: Mapping[str, str] | None = None,
    signature: Signature | None = None,
    created_at: str | None = None,
) -> Path:
    """Build ``<name>-<version>.modelyard`` from a model directory or one model file; returns its path.

    ``out`` is the package file (``*.modelyard``), or a directory to write it in (created if
    needed; default: the current directory).
    Arguments override ``modelyard.yaml``. ``signature`` overrides the one read from the model;
    ``created_at`` (ISO 8601) makes a build reproducible: the same files and arguments give the
    same bytes. Raises :class:`PackageInvalid` naming the file or setting at fault.
    """
    source = Path(source)
    if not source.exists():
        raise PackageInvalid(f"model directory or file not found: {source}", field=str(source))
    root = source if source.is_dir() else source.parent
    config = load_build_config(root) if source.is_dir() else BuildConfig()
    skip = [out] if out is not None else []
    files = collect_files(root, skip) if source.is_dir() else {source.name: source}
    served_entry, served_file = _served(
        root,
        files,
        entry or config.entry,
        model_file or config.model_file or (None if source.is_dir() else source.name),
    )
    runtime, declared, served_entry = _signature(root, files, served_entry, served_file)
    fields = {
        "name": name
        or config.name
        or declared.get("name")
        or (root.name if source.is_dir() else source.stem),
        "version": version or config.version or declared.get("version") or "1",
        "entry": served_entry,
        "runtime": runtime,
        "model_file": served_file,
        "signature": signature or declared["signature"],
        "requirements": _requirements(root, requirements, config),
        "framework": _framework(runtime),
        "author": author or config.author or _os_user(),
        "description": description or config.description or "",
        "labels": {**config.labels, **(labels or {})},
        "created_at": created_at or created_at_now(),
        "files": {rel: sha256_file(path) for rel, path in files.items()},
    }
    manifest = _manifest(fields)
    return write_package(manifest, files, _output_path(out, manifest.name, manifest.version))


def _signature(
    root: Path, files: Mapping[str, Path], entry: str | None, model_file: str | None
) -> tuple[str | None, dict[str, Any], str | None]:
    """``(runtime, declared, entry)``: declared holds the signature (and a @model's name/version)."""
    if model_file is not None:
        if model_file not in files:
            raise PackageInvalid(f"model file {model_file!r} is not in {root}", field=model_file)
        runtime = SUFFIXES.get(Path(model_file).suffix.lower())
        if runtime is None:
            raise PackageInvalid(f"cannot tell the format of {model_file!r}", field=model_file)
        return runtime, {"signature": runtime_signature(runtime, files[model_file])}, None
    assert entry is not None
    if not entry.partition(":")[0].endswith(".py"):  # a class inside modelyard: the caller declares it
        return None, {"signature": Signature()}, entry
    found_entry, declared = entry_signature(root, entry)
    return None, declared, found_entry


def _manifest(fields: dict[str, Any]) -> Manifest:
    try:
        return Manifest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise PackageInvalid(f"invalid package {where}: {first['msg']}", field=where) from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. in some containers)
        return "unknown"
