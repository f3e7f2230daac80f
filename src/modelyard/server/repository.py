"""The set of model versions one server holds, by name and version."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from modelyard.errors import Conflict, ModelNotFound
from modelyard.server.runtime import ModelRuntime

__all__ = ["ModelRepository"]


class ModelRepository:
    """Model versions by name. Without a version, the highest numeric version wins (Triton's policy)."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, ModelRuntime]] = {}

    def add(self, runtime: ModelRuntime) -> None:
        versions = self._models.setdefault(runtime.spec.name, {})
        if runtime.spec.version in versions:
            raise Conflict(
                f"model '{runtime.spec.name}' version '{runtime.spec.version}' is already served",
                field="model",
            )
        versions[runtime.spec.version] = runtime

    def get(self, name: str, version: str | None = None) -> ModelRuntime:
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFound(name)
        if not version:
            return versions[self.latest_version(name)]
        try:
            return versions[version]
        except KeyError:
            raise ModelNotFound(name, version) from None

    def versions(self, name: str) -> list[str]:
        if name not in self._models:
            raise ModelNotFound(name)
        return sorted(self._models[name], key=_version_key)

    def latest_version(self, name: str) -> str:
        return self.versions(name)[-1]

    def __iter__(self) -> Iterator[ModelRuntime]:
        for versions in self._models.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._models.values())

    async def load_all(self) -> None:
        """Load every model concurrently; a failure leaves that model FAILED and is re-raised."""
        results = await asyncio.gather(*(rt.load() for rt in self), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def unload_all(self) -> None:
        await asyncio.gather(*(rt.unload() for rt in self), return_exceptions=True)


def _version_key(version: str) -> tuple[int, int, str]:
    return (1, int(version), "") if version.isdigit() else (0, 0, version)
