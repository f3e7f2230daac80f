"""The model author's API: one class, optional hooks, ``@model`` and ``@batch``."""

from modelyard.sdk.batch import BatchedMethod, BatchSpec, batch
from modelyard.sdk.model import HOOKS, ModelSpec, model
from modelyard.sdk.signature import ModelMetadata, TensorSpec

__all__ = [
    "HOOKS",
    "BatchSpec",
    "BatchedMethod",
    "ModelMetadata",
    "ModelSpec",
    "TensorSpec",
    "batch",
    "model",
]
