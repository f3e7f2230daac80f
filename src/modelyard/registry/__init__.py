"""The model registry: named models, numbered versions, movable aliases, content-addressed artifacts.

The core (:class:`Registry`) is transport-free; ``modelyard.registry.rest.build_registry_app``
serves it over HTTP and :class:`RegistryClient` talks to that server. ``fetch_model(ref)`` is
what ``modelyard serve name@production`` calls. See docs/registry.md.
"""

from __future__ import annotations

from modelyard.registry.api import RegistryAPI
from modelyard.registry.client import RegistryClient
from modelyard.registry.core import Registry
from modelyard.registry.fetch import fetch_model, open_registry
from modelyard.registry.refs import ModelRef, parse_ref
from modelyard.registry.settings import RegistrySettings
from modelyard.registry.store import ArtifactStore, FsspecArtifactStore
from modelyard.registry.types import (
    Alias,
    AliasEvent,
    ListedArtifact,
    ModelVersion,
    Page,
    RegisteredModel,
    StoredArtifact,
    VersionSpec,
    VersionUsage,
)

__all__ = [
    "Alias",
    "AliasEvent",
    "ArtifactStore",
    "FsspecArtifactStore",
    "ListedArtifact",
    "ModelRef",
    "ModelVersion",
    "Page",
    "RegisteredModel",
    "Registry",
    "RegistryAPI",
    "RegistryClient",
    "RegistrySettings",
    "StoredArtifact",
    "VersionSpec",
    "VersionUsage",
    "fetch_model",
    "open_registry",
    "parse_ref",
]
