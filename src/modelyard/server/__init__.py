"""The transport-free model-server core: runtimes, batching, repository, data plane, metrics."""

from modelyard.server.batching import Batcher
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
