"""The model registry: named models, numbered versions, movable aliases, content-addressed artifacts.

The core (:class:`Registry`) is transport-free; ``modelyard.registry.rest.registry_routes`` gives
its HTTP routes (``modelyard.control.app.build_control_app`` serves them) and
:class:`RegistryClient` talks to that server. ``fetch_model(ref)`` is what ``modelyard serve
name@production`` calls. See docs/registry.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.control.settings import ControlSettings
    from modelyard.registry.api import RegistryAPI
    from modelyard.registry.client import RegistryClient
    from modelyard.registry.core import Registry
    from modelyard.registry.fetch import fetch_model, open_registry
    from modelyard.registry.refs import ModelRef, parse_ref
    from modelyard.registry.store import ArtifactStore, FsspecArtifactStore
    from modelyard.registry.types import (
        Alias,
        AliasEvent,
        ListedArtifact,
        ModelVersion,
        NewVersion,
        Page,
        RegisteredModel,
        StoredArtifact,
        VersionUsage,
    )

__all__ = [
    "Alias",
    "AliasEvent",
    "ArtifactStore",
    "ControlSettings",
    "FsspecArtifactStore",
    "ListedArtifact",
    "ModelRef",
    "ModelVersion",
    "NewVersion",
    "Page",
    "RegisteredModel",
    "Registry",
    "RegistryAPI",
    "RegistryClient",
    "StoredArtifact",
    "VersionUsage",
    "fetch_model",
    "open_registry",
    "parse_ref",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Alias": "types",
        "AliasEvent": "types",
        "ArtifactStore": "store",
        "FsspecArtifactStore": "store",
        "ListedArtifact": "types",
        "ModelRef": "refs",
        "ModelVersion": "types",
        "Page": "types",
        "RegisteredModel": "types",
        "Registry": "core",
        "RegistryAPI": "api",
        "RegistryClient": "client",
        "ControlSettings": "modelyard.control.settings",
        "StoredArtifact": "types",
        "NewVersion": "types",
        "VersionUsage": "types",
        "fetch_model": "fetch",
        "open_registry": "fetch",
        "parse_ref": "refs",
    },
)
