"""An author-written model: the whole SDK in one class.

Serve it with ``modelyard serve examples/sentiment.py:Sentiment``.
"""

from __future__ import annotations

import numpy as np

import modelyard
from modelyard import TensorSpec

POSITIVE = {"good", "great", "love", "excellent", "happy", "fast"}
NEGATIVE = {"bad", "awful", "hate", "slow", "broken", "sad"}


@modelyard.model(
    name="sentiment",
    version="1",
    inputs=[TensorSpec("text", "BYTES", [-1])],
    outputs=[TensorSpec("label", "BYTES", [-1]), TensorSpec("score", "FP32", [-1])],
    labels={"owner": "examples", "task": "text-classification"},
)
class Sentiment:
    """A lexicon scorer: preprocess tokenises, predict is batched, postprocess formats the answer."""

    def load(self) -> None:
        # A real model would read weights here; the lexicon stands in for them.
        self.weights = {**dict.fromkeys(POSITIVE, 1.0), **dict.fromkeys(NEGATIVE, -1.0)}

    def preprocess(self, inputs: dict[str, np.ndarray]) -> list[list[str]]:
        return [v.decode().lower().split() for v in inputs["text"].ravel()]

    @modelyard.batch(max_batch_size=32, max_latency_ms=5)
    def predict(self, batch: list[list[list[str]]]) -> list[np.ndarray]:
        # One call for many requests; each item is one request's list of token lists.
        return [
            np.array([sum(self.weights.get(t, 0.0) for t in tokens) for tokens in item]) for item in batch
        ]

    def postprocess(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        labels = np.array([b"positive" if s > 0 else b"negative" if s < 0 else b"neutral" for s in scores])
        return {"label": labels.astype(object), "score": np.tanh(scores).astype(np.float32)}

    def warmup(self) -> None:
        self.predict([[["warm", "up"]]])

    def health(self) -> bool:
        return bool(self.weights)
