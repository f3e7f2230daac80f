"""Tiny real models used across the tests (no mocks: each is a genuine model class)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

import modelyard
from modelyard import TensorSpec


@modelyard.model(
    name="doubler",
    inputs=[TensorSpec("x", "FP32", [-1, 3])],
    outputs=[TensorSpec("y", "FP32", [-1, 3])],
    labels={"team": "tests"},
)
class Doubler:
    """Stacked batching: receives one [n, 3] array per batch; records each batch's size."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    @modelyard.batch(max_batch_size=16, max_latency_ms=20, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batch_sizes.append(int(inputs["x"].shape[0]))
        return {"y": inputs["x"] * 2}


@modelyard.model(
    name="picky", inputs=[TensorSpec("x", "FP32", [-1, 1])], outputs=[TensorSpec("y", "FP32", [-1, 1])]
)
class Picky:
    """Fails on any negative value: one bad item in a batch must fail alone."""

    @modelyard.batch(max_batch_size=8, max_latency_ms=30, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("negative values are not allowed")
        return {"y": x + 1}


@modelyard.model(name="lister")
class Lister:
    """List-mode batching with preprocess and postprocess per request, outside the batch."""

    def preprocess(self, inputs: dict[str, np.ndarray]) -> float:
        return float(inputs["x"].sum())

    @modelyard.batch(max_batch_size=4, max_latency_ms=20)
    def predict(self, totals: list[float]) -> list[float]:
        return [t * 10 for t in totals]

    def postprocess(self, total: float) -> dict[str, np.ndarray]:
        return {"total": np.array([total], dtype=np.float64)}


@modelyard.model(name="slow")
class Slow:
    """Sleeps for the number of seconds it is given; unbatched, so calls run side by side."""

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        time.sleep(float(inputs["seconds"].ravel()[0]))
        return np.array([threading.get_ident()], dtype=np.int64)


@modelyard.model(name="async_echo")
class AsyncEcho:
    """Async hooks; echoes BYTES and strings back."""

    async def load(self) -> None:
        await asyncio.sleep(0)

    async def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(inputs)


@modelyard.model(name="unwell")
class Unwell:
    """Loads, but its warm-up fails: it must never become ready."""

    def warmup(self) -> None:
        raise RuntimeError("weights are corrupt")

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros(1)
