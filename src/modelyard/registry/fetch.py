"""``fetch_model``: the one call ``modelyard serve name@alias`` needs to get a model file."""

from __future__ import annotations

from pathlib import Path

from modelyard.control.settings import ControlSettings
from modelyard.registry.api import RegistryAPI
from modelyard.registry.client import RegistryClient
from modelyard.registry.core import Registry
from modelyard.registry.types import ModelVersion

__all__ = ["fetch_model", "fetch_version", "open_registry"]


def open_registry(settings: ControlSettings, registry_url: str | None = None) -> RegistryAPI:
    """A client of the registry server at ``registry_url``, or else the local registry itself."""
    return RegistryClient(registry_url) if registry_url else Registry(settings)


def fetch_model(
    ref: str,
    *,
    settings: ControlSettings | None = None,
    registry_url: str | None = None,
    dest_dir: Path | None = None,
) -> Path:
    """A local, SHA-256-verified copy of the artifact ``ref`` (``name``, ``name/3``, ``name@alias``) names.

    Downloads go to ``dest_dir``, by default ``<cache_dir>/<sha256>/``, where an intact copy from an
    earlier call is reused without downloading again. With ``registry_url`` (or, for the CLI,
    ``MODELYARD_CONTROL_URL``) the registry server is asked; otherwise the local registry.
    """
    return fetch_version(ref, settings=settings, registry_url=registry_url, dest_dir=dest_dir)[0]


def fetch_version(
    ref: str,
    *,
    settings: ControlSettings | None = None,
    registry_url: str | None = None,
    dest_dir: Path | None = None,
) -> tuple[Path, ModelVersion]:
    """Like :func:`fetch_model`, also returning the version the reference resolved to."""
    settings = settings if settings is not None else ControlSettings.from_env()
    registry = open_registry(settings, registry_url)
    try:
        version = registry.resolve(ref)
        folder = dest_dir if dest_dir is not None else settings.resolved_cache_dir() / version.sha256
        return registry.fetch(version.ref, folder), version
    finally:
        registry.close()
