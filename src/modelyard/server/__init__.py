"""The transport-free model-server core: runtimes, batching, repository, data plane, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.server.batcher import Batcher
    from modelyard.server.dataplane import DataPlane
    from modelyard.server.metrics import ServerMetrics
    from modelyard.server.repository import ModelRepository
    from modelyard.server.runtime import ModelRuntime, ModelState, RuntimeOptions
    from modelyard.server.settings import ModelConfig, Settings
    from modelyard.server.types import InferenceRequest, InferenceResponse

__all__ = [
    "Batcher",
    "DataPlane",
    "InferenceRequest",
    "InferenceResponse",
    "ModelConfig",
    "ModelRepository",
    "ModelRuntime",
    "ModelState",
    "RuntimeOptions",
    "ServerMetrics",
    "Settings",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Batcher": "batcher",
        "DataPlane": "dataplane",
        "InferenceRequest": "types",
        "InferenceResponse": "types",
        "ModelConfig": "settings",
        "ModelRepository": "repository",
        "ModelRuntime": "runtime",
        "ModelState": "runtime",
        "RuntimeOptions": "runtime",
        "ServerMetrics": "metrics",
        "Settings": "settings",
    },
)
