"""Candidates for the end-to-end rollout tests, served as ``rollout_models.py:Class``: the same
linear model, y = x @ W + B, answering alike but failing or slow in their own ways."""

from __future__ import annotations

import itertools
import time

import numpy as np

import modelyard
from modelyard import TensorSpec

W = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=np.float32)
B = np.array([0.5, -1.0], dtype=np.float32)
IO = {"inputs": [TensorSpec("x", "FP32", [-1, 3])], "outputs": [TensorSpec("y", "FP32", [-1, 2])]}
# Steady's; Sluggish takes 3 times as long. The p99 gate compares histogram buckets (bounds ...,
# 75, 100, 150, 200, 300, 500 ms): Steady's 106+ ms fall in (100, 150] and stay there through 40 ms
# of jitter on a busy machine (seen: 20 ms); Sluggish's 316+ ms start at 300, above 1.5 times 150.
BASE_DELAY_S = 0.105


class _Linear:
    delay_s = 0.0

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"y": inputs["x"] @ W + B}


@modelyard.model(name="linear", **IO)
class Linear(_Linear):
    """Answers at once."""


@modelyard.model(name="flaky", **IO)
class Flaky(_Linear):
    """Answers as Linear, but every fifth request fails (a 500): 20 % exactly."""

    def __init__(self) -> None:
        self.calls = itertools.count(1)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if next(self.calls) % 5 == 0:
            raise RuntimeError("flaky: every fifth request fails")
        return super().predict(inputs)


@modelyard.model(name="steady", **IO)
class Steady(_Linear):
    """Answers as Linear, in a little over 100 ms."""

    delay_s = BASE_DELAY_S


@modelyard.model(name="sluggish", **IO)
class Sluggish(_Linear):
    """Answers as Steady, 3 times slower."""

    delay_s = 3 * BASE_DELAY_S
