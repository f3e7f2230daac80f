"""The scikit-learn runtime: real estimators fitted on tiny data, saved, served over OIP REST."""

from __future__ import annotations

import pickle
import sys
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from starlette.testclient import TestClient

from modelyard.runtimes.sklearn import SklearnModel

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
CLASSES = np.digitize(X[:, 0] + X[:, 1], [-0.7, 0.7])  # 0, 1, 2
TARGET = X @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.25
QUERY = RNG.normal(size=(5, 4))


class Constant:
    """Not scikit-learn, but it has predict and no n_features_in_ (module level so it unpickles)."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), 7.0)


def save(estimator: Any, path: Path) -> Path:
    if path.suffix == ".joblib":
        joblib.dump(estimator, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(estimator, handle)
    return path


def infer(client: TestClient, model: str, rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ],
        **extra,
    }
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return {out["name"]: out for out in response.json()["outputs"]}


def test_classifier_signature_and_predictions(tmp_path: Path, serve: Any) -> None:
    clf = LogisticRegression().fit(X, CLASSES)
    client = serve(save(clf, tmp_path / "clf.joblib"))
    doc = client.get("/v2/models/clf").json()
    assert doc["platform"] == "sklearn_sklearn"
    assert doc["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert doc["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    outputs = infer(client, "clf", QUERY)
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["data"] == clf.predict(QUERY).tolist()
    assert outputs["predict_proba"]["shape"] == [5, 3]
    np.testing.assert_allclose(outputs["predict_proba"]["data"], clf.predict_proba(QUERY).ravel())


def test_regressor_from_pickle(tmp_path: Path, serve: Any) -> None:
    reg = Ridge(alpha=0.1).fit(X, TARGET)
    client = serve(save(reg, tmp_path / "reg.pkl"))
    doc = client.get("/v2/models/reg").json()
    assert doc["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]  # no predict_proba
    outputs = infer(client, "reg", QUERY)
    assert list(outputs) == ["predict"]
    np.testing.assert_allclose(outputs["predict"]["data"], reg.predict(QUERY))


def test_multi_output_regressor_declares_its_width(tmp_path: Path, serve: Any) -> None:
    reg = LinearRegression().fit(X, np.stack([TARGET, -TARGET], axis=1))
    client = serve(save(reg, tmp_path / "two.pickle"))
    assert client.get("/v2/models/two").json()["outputs"][0]["shape"] == [-1, 2]
    outputs = infer(client, "two", QUERY)
    assert outputs["predict"]["shape"] == [5, 2]
    np.testing.assert_allclose(outputs["predict"]["data"], reg.predict(QUERY).ravel())


def test_string_labels_come_back_as_bytes(tmp_path: Path, serve: Any) -> None:
    names = np.array(["cat", "dog", "emu"])[CLASSES]
    clf = LogisticRegression().fit(X, names)
    client = serve(save(clf, tmp_path / "animals.pickle"))
    assert client.get("/v2/models/animals").json()["outputs"][0]["datatype"] == "BYTES"
    outputs = infer(client, "animals", QUERY)
    assert outputs["predict"]["datatype"] == "BYTES"
    assert outputs["predict"]["data"] == clf.predict(QUERY).tolist()


def test_only_the_requested_output_is_returned(tmp_path: Path, serve: Any) -> None:
    clf = LogisticRegression().fit(X, CLASSES)
    client = serve(save(clf, tmp_path / "clf.joblib"))
    outputs = infer(client, "clf", QUERY, outputs=[{"name": "predict_proba"}])
    assert list(outputs) == ["predict_proba"]
    np.testing.assert_allclose(outputs["predict_proba"]["data"], clf.predict_proba(QUERY).ravel())


def test_pipelines_work_and_concurrent_requests_are_batched(tmp_path: Path, serve: Any) -> None:
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X * 100 + 5, CLASSES)
    client = serve(save(pipe, tmp_path / "pipe.joblib"), max_latency_ms=50)
    assert client.get("/v2/models/pipe").json()["inputs"][0]["shape"] == [-1, 4]
    queries = [X[i : i + 1] * 100 + 5 for i in range(12)]
    results: list[Any] = [None] * len(queries)
    barrier = threading.Barrier(len(queries))

    def call(i: int) -> None:
        barrier.wait()
        results[i] = infer(client, "pipe", queries[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for query, outputs in zip(queries, results, strict=True):  # each got its own row back
        assert outputs["predict"]["data"] == pipe.predict(query).tolist()
        np.testing.assert_allclose(outputs["predict_proba"]["data"], pipe.predict_proba(query).ravel())
    metrics = client.get("/metrics").text
    assert 'modelyard_inference_count_total{model="pipe",version="1"} 12.0' in metrics
    assert 'modelyard_inference_exec_count_total{model="pipe",version="1"} 12.0' not in metrics


def test_wrong_width_and_wrong_datatype_are_400s(tmp_path: Path, serve: Any) -> None:
    client = serve(save(Ridge().fit(X, TARGET), tmp_path / "reg.joblib"))
    wide = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 5], "data": [0.0] * 5}]}
    response = client.post("/v2/models/reg/infer", json=wide)
    assert response.status_code == 400
    assert response.json()["field"] == "input.shape"
    fp32 = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.0] * 4}]}
    response = client.post("/v2/models/reg/infer", json=fp32)
    assert response.status_code == 400
    assert "FP64" in response.json()["error"]


def test_unknown_width_is_a_variable_dimension(tmp_path: Path) -> None:
    model = SklearnModel(path=str(save(Constant(), tmp_path / "constant.pkl")), name="constant")
    model.load()
    meta = model.metadata()
    assert meta.inputs[0].shape == (-1, -1)
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [("predict", "FP64", (-1,))]
    model.warmup()  # nothing to warm up with: must not fail
    result = model.predict({"input": np.zeros((3, 9))})
    assert result["predict"].tolist() == [7.0, 7.0, 7.0]


def test_a_file_without_an_estimator_fails_to_load(tmp_path: Path, serve: Any) -> None:
    client = serve(save({"weights": [1, 2]}, tmp_path / "notamodel.joblib"))
    startup = client.get("/health/startup")
    assert startup.status_code == 503
    assert "no predict method" in startup.json()["error"]
    assert client.get("/v2/models/notamodel/ready").status_code == 503


def test_missing_scikit_learn_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(Ridge().fit(X, TARGET), tmp_path / "reg.joblib")
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'modelyard\[sklearn\]'"):
        SklearnModel(path=str(path), name="reg").load()
