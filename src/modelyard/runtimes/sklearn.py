"""Serve a fitted scikit-learn estimator or pipeline (``.joblib``, ``.pkl``, ``.pickle``), with no code.

The signature is derived from the fitted estimator:

- one input ``input``: FP64, shape ``[-1, n_features_in_]`` (``[-1, -1]`` when the estimator does
  not record its width);
- output ``predict``: the estimator's ``predict``; INT64 for integer class labels, BYTES for string
  labels, BOOL for boolean labels, FP64 otherwise (regression);
- output ``predict_proba``: FP64 ``[-1, n_classes]``, when the estimator has ``predict_proba``.

FP64 because scikit-learn computes in float64: an FP32 input would round the client's features and
the served predictions could differ from the estimator's own on the same data.

.. warning:: Loading a pickle (``joblib`` files are pickles too) runs arbitrary code from the
   file. Only serve files you trust.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.dtypes import datatype_of
from modelyard.sdk import ModelMetadata, TensorSpec

__all__ = ["SklearnModel"]

INPUT = "input"
_INSTALL_HINT = "serving scikit-learn models needs scikit-learn and joblib: pip install 'modelyard[sklearn]'"


def _import_joblib() -> Any:
    try:
        import joblib
        import sklearn  # noqa: F401  (unpickling an estimator imports it anyway; fail early and clearly)
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return joblib


def _label_datatype(classes: np.ndarray) -> str:
    """The OIP datatype of ``predict``'s result for a classifier with these ``classes_``."""
    kind = classes.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"  # strings, or objects (mixed labels) that travel as text


def _as_output(values: Any) -> np.ndarray:
    """Normalise a ``predict`` result to the declared datatypes (INT64, FP64, BOOL or BYTES)."""
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind == "b":
        return array
    if kind in "iu":
        return array.astype(np.int64, copy=False)
    if kind == "f":
        return array.astype(np.float64, copy=False)
    flat = [v if isinstance(v, bytes) else str(v) for v in array.ravel()]
    strings: np.ndarray = np.array(flat, dtype=object).reshape(array.shape)
    return strings


class SklearnModel:
    """A fitted estimator served as a model class: load, metadata, warmup and a stacked predict."""

    def __init__(self, path: str, name: str, version: str = "1") -> None:
        self.path = path
        self.name = name
        self.version = version
        self.estimator: Any = None
        self.n_features: int | None = None
        self._feature_names: list[str] | None = None
        self._predict_spec = TensorSpec("predict", "FP64", [-1])

    def load(self) -> None:
        """Unpickle the estimator: ``.joblib`` with joblib, ``.pkl``/``.pickle`` with pickle."""
        joblib = _import_joblib()
        if Path(self.path).suffix.lower() == ".joblib":
            estimator = joblib.load(self.path)
        else:
            with open(self.path, "rb") as handle:
                estimator = pickle.load(handle)  # runs code from the file: trusted files only
        if not callable(getattr(estimator, "predict", None)):
            raise TypeError(
                f"{self.path} holds a {type(estimator).__name__}, which has no predict method;"
                " save a fitted scikit-learn estimator or pipeline"
            )
        self.estimator = estimator
        width = getattr(estimator, "n_features_in_", None)
        self.n_features = int(width) if isinstance(width, int | np.integer) else None
        names = getattr(estimator, "feature_names_in_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None
        self._predict_spec = self._derive_predict_spec()

    def metadata(self) -> ModelMetadata:
        """The signature derived from the fitted estimator (see the module docstring)."""
        width = self.n_features if self.n_features is not None else -1
        outputs = [self._predict_spec]
        classes = self._classes()
        if self._has_proba() and classes is not None:
            outputs.append(TensorSpec("predict_proba", "FP64", [-1, len(classes)]))
        labels = {"estimator": type(self.estimator).__name__, "device": "cpu"}  # scikit-learn's only
        if self._feature_names is not None:
            labels["feature_names"] = ",".join(self._feature_names)
        return ModelMetadata(
            name=self.name,
            version=self.version,
            inputs=(TensorSpec(INPUT, "FP64", [-1, width]),),
            outputs=tuple(outputs),
            platform="sklearn_sklearn",
            labels=labels,
        )

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``predict`` (and ``predict_proba`` when available) for a batch of rows."""
        features = self._features(inputs[INPUT])
        result = {"predict": _as_output(self.estimator.predict(features))}
        if self._has_proba():
            proba = self.estimator.predict_proba(features)
            if isinstance(proba, np.ndarray):  # multi-output classifiers return a list: not served
                result["predict_proba"] = proba.astype(np.float64, copy=False)
        return result

    def warmup(self) -> None:
        """One row of zeros through the estimator, when its input width is known."""
        if self.n_features is not None:
            self.predict({INPUT: np.zeros((1, self.n_features), dtype=np.float64)})

    # -- internals ---------------------------------------------------------------------------

    def _features(self, array: np.ndarray) -> Any:
        # An estimator fitted on a DataFrame selects (and checks) columns by name: give it one.
        if self._feature_names is None or array.ndim != 2 or array.shape[1] != len(self._feature_names):
            return array
        try:
            pandas = importlib.import_module("pandas")  # optional: only such estimators need it
        except ImportError:
            return array
        return pandas.DataFrame(array, columns=self._feature_names)

    def _classes(self) -> np.ndarray | None:
        classes = getattr(self.estimator, "classes_", None)
        if isinstance(classes, np.ndarray) and classes.ndim == 1:
            return classes
        return None

    def _has_proba(self) -> bool:
        return callable(getattr(self.estimator, "predict_proba", None))

    def _derive_predict_spec(self) -> TensorSpec:
        """``predict``'s datatype and shape: from one probe row when the width is known, else
        from ``classes_`` (classifiers) and ``n_outputs_`` (multi-output estimators)."""
        classes = self._classes()
        datatype = _label_datatype(classes) if classes is not None else "FP64"
        outputs = getattr(self.estimator, "n_outputs_", None)
        shape = [-1, int(outputs)] if isinstance(outputs, int | np.integer) and outputs > 1 else [-1]
        if self.n_features is not None:
            zeros = self._features(np.zeros((1, self.n_features), dtype=np.float64))
            try:
                probe = _as_output(self.estimator.predict(zeros))
            except Exception:  # zeros may be outside what a pipeline accepts: keep the estimate
                return TensorSpec("predict", datatype, shape)
            return TensorSpec("predict", datatype_of(probe), [-1, *probe.shape[1:]])
        return TensorSpec("predict", datatype, shape)
