"""Tiny model directories for the package tests, and a private modelyard home per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from tests.support import linear_onnx

FIXED_TIME = "2026-01-02T03:04:05Z"

AUTHOR_MODEL = textwrap.dedent(
    """
    from pathlib import Path

    import numpy as np

    import modelyard
    from modelyard import TensorSpec

    HERE = Path(__file__).parent


    @modelyard.model(
        name="scaler",
        version="4",
        inputs=[TensorSpec("x", "FP64", [-1, 3])],
        outputs=[TensorSpec("y", "FP64", [-1, 3])],
    )
    class Scaler:
        def load(self):
            self.weights = np.load(HERE / "weights.npy")

        def predict(self, inputs):
            return {"y": inputs["x"] * self.weights}
    """
)


def regressor(seed: int = 5) -> LinearRegression:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(30, 4))
    return LinearRegression().fit(features, features @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.25)


def author_dir(root: Path) -> Path:
    """model.py with a @model class whose load reads weights.npy next to it, plus junk to skip."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.py").write_text(AUTHOR_MODEL)
    np.save(root / "weights.npy", np.array([1.0, 2.0, 3.0]))
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"junk")
    (root / ".git").mkdir(exist_ok=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "stale.pyc").write_bytes(b"junk")
    return root


def onnx_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    linear_onnx(root / "scorer.onnx")
    return root


def sklearn_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    joblib.dump(regressor(), root / "regressor.joblib")
    return root


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MODELYARD_HOME in the test's folder: the cache never touches the real ~/.modelyard."""
    path = tmp_path / "home"
    monkeypatch.setenv("MODELYARD_HOME", str(path))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return path
