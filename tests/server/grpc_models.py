"""A model for the gRPC tests that must hold the model busy: it sleeps, and says when it ran.

Served from this file (``tests/server/grpc_models.py:Sleeper``) by a ``modelyard serve`` process.
Each predict call writes a file into ``$MODELYARD_TEST_MARKERS`` before it sleeps, so a test knows
when the model is busy, and how many calls were ever made: a request that expired while queued
leaves no file.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np

import modelyard
from modelyard import TensorSpec


@modelyard.model(
    name="sleeper",
    inputs=[TensorSpec("seconds", "FP32", [-1, 1])],
    outputs=[TensorSpec("slept", "FP32", [-1, 1])],
)
class Sleeper:
    """One row per call (max_batch_size=1): a queued request never joins the running one."""

    @modelyard.batch(max_batch_size=1, max_latency_ms=0, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seconds = inputs["seconds"]
        (Path(os.environ["MODELYARD_TEST_MARKERS"]) / uuid.uuid4().hex).write_text(str(seconds.ravel()))
        time.sleep(float(seconds.sum()))
        return {"slept": seconds}
