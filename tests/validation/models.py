"""Model classes the validation tests load as ``models.py:Class``, the way a user names theirs."""

from __future__ import annotations

import numpy as np

import modelyard
from modelyard import TensorSpec

_X = [TensorSpec("x", "FP32", [-1, 3])]


class _Cut:
    """A classifier: class 1 when the first feature is above ``cut``."""

    cut = 0.0

    @modelyard.batch(max_batch_size=256, max_latency_ms=1, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        label = (x[:, 0] > self.cut).astype(np.int64)
        return {"label": label, "proba": np.stack([1.0 - label, label], axis=1).astype(np.float32)}


_OUT = [TensorSpec("label", "INT64", [-1]), TensorSpec("proba", "FP32", [-1, 2])]


@modelyard.model(name="cut0", inputs=_X, outputs=_OUT)
class CutAtZero(_Cut):
    cut = 0.0


@modelyard.model(name="cut3", inputs=_X, outputs=_OUT)
class CutAtThreeTenths(_Cut):
    cut = 0.3


@modelyard.model(name="sum", inputs=_X, outputs=[TensorSpec("y", "FP64", [-1])])
class Sum:
    """A regressor: the sum of the features."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"].sum(axis=1).astype(np.float64)}


@modelyard.model(name="sum_fragile", inputs=_X, outputs=[TensorSpec("y", "FP64", [-1])])
class FragileSum:
    """The same regressor, but it fails on any row whose first feature is above 2."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        if (x[:, 0] > 2).any():
            raise ValueError("first feature out of range")
        return {"y": x.sum(axis=1).astype(np.float64)}


@modelyard.model(name="sum_noisy", inputs=_X, outputs=[TensorSpec("y", "FP64", [-1])])
class NoisySum:
    """The sum plus 0.5: a worse regressor (RMSE up by about 0.5)."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"].sum(axis=1).astype(np.float64) + 0.5}
