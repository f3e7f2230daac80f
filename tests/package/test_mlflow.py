"""MLflow import with no mlflow installed: sklearn and onnx flavors become zero-code packages;
other python_function models get modelyard's wrapper, tested here against a stand-in mlflow."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from modelyard.errors import PackageInvalid
from modelyard.package import read_manifest
from modelyard.package.loading import spec_from_path
from modelyard.package.mlflow import PYFUNC_ENTRY, import_mlflow
from modelyard.server import ModelConfig, Settings
from modelyard.server.app import build_app
from tests.package.conftest import linear_onnx, regressor
from tests.package.test_serve import infer

COLUMNS = ["a", "b", "c", "d"]


def column_signature(names: list[str], output: str = "double") -> dict[str, str]:
    inputs = [{"type": "double", "name": name, "required": True} for name in names]
    return {"inputs": json.dumps(inputs), "outputs": json.dumps([{"type": output, "required": True}])}


def mlflow_dir(
    root: Path, flavors: dict[str, object], signature: dict[str, str] | None, requirements: str
) -> Path:
    root.mkdir(parents=True)
    mlmodel: dict[str, object] = {
        "artifact_path": "model",
        "flavors": flavors,
        "model_uuid": "abc123",
        "mlflow_version": "2.10.0",
    }
    if signature is not None:
        mlmodel["signature"] = signature
    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (root / "requirements.txt").write_text(requirements)
    (root / "conda.yaml").write_text("dependencies: [python=3.11]\n")
    return root


def sklearn_mlflow(root: Path) -> Path:
    flavors = {
        "python_function": {
            "loader_module": "mlflow.sklearn",
            "model_path": "model.pkl",
            "python_version": "3.11.7",
        },
        "sklearn": {
            "pickled_model": "model.pkl",
            "serialization_format": "pickle",
            "sklearn_version": "1.9.1",
        },
    }
    requirements = "mlflow==2.10.0\nscikit-learn\nnumpy\n"
    directory = mlflow_dir(root, flavors, column_signature(COLUMNS), requirements)
    (directory / "model.pkl").write_bytes(pickle.dumps(regressor()))
    return directory


def test_the_sklearn_flavor_becomes_the_zero_code_runtime(tmp_path: Path) -> None:
    package = import_mlflow(sklearn_mlflow(tmp_path / "housing"), tmp_path)
    manifest = read_manifest(package)
    assert (manifest.name, manifest.runtime, manifest.model_file) == ("housing", "sklearn", "model.pkl")
    assert {"MLmodel", "model.pkl", "requirements.txt", "conda.yaml"} == set(manifest.files)
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("input", "FP64", [-1, 4])
    ]
    assert [(t.name, t.datatype) for t in manifest.signature.outputs] == [("predict", "FP64")]
    assert [r.split("==")[0] for r in manifest.requirements] == ["numpy", "scikit-learn"]  # mlflow dropped
    assert manifest.labels["mlflow_flavor"] == "sklearn"
    assert manifest.labels["mlflow_model_uuid"] == "abc123"

    rows = np.random.default_rng(2).normal(size=(3, 4))
    with TestClient(build_app(Settings(models=[ModelConfig(path=str(package))]))) as client:
        predict = infer(client, "/v2/models/housing/infer", "input", rows, "FP64")["predict"]
    np.testing.assert_allclose(predict["data"], regressor().predict(rows), rtol=1e-9)


def test_the_onnx_flavor_reads_the_signature_from_the_graph(tmp_path: Path) -> None:
    flavors = {
        "onnx": {"data": "model.onnx", "onnx_version": "1.16.0"},
        "python_function": {"loader_module": "mlflow.onnx"},
    }
    directory = mlflow_dir(tmp_path / "scorer", flavors, None, "mlflow==2.10.0\nonnx==1.16.0\n")
    linear_onnx(directory / "model.onnx")
    manifest = read_manifest(import_mlflow(directory, tmp_path, version="3"))
    assert (manifest.runtime, manifest.model_file, manifest.version) == ("onnx", "model.onnx", "3")
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("x", "FP32", [-1, 3])
    ]
    assert manifest.requirements == ["onnx==1.16.0"]


FAKE_PYFUNC = textwrap.dedent(
    """
    import numpy as np

    class _Model:
        def __init__(self, path):
            self.offset = float(open(path + "/offset.txt").read())

        def predict(self, data):
            return np.asarray(data, dtype=np.float64).sum(axis=1) + self.offset

    def load_model(path):
        return _Model(path)
    """
)


def pyfunc_dir(root: Path) -> Path:
    tensor = {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}
    signature = {
        "inputs": json.dumps([tensor]),
        "outputs": json.dumps([{**tensor, "tensor-spec": {"dtype": "float64", "shape": [-1]}}]),
    }
    flavors = {"python_function": {"loader_module": "custom.loader", "python_version": "3.11.7"}}
    directory = mlflow_dir(root, flavors, signature, "mlflow==2.10.0\n")
    (directory / "offset.txt").write_text("0.5")
    return directory


def test_other_flavors_get_the_pyfunc_wrapper_which_needs_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = import_mlflow(pyfunc_dir(tmp_path / "custom"), tmp_path)
    manifest = read_manifest(package)
    assert (manifest.entry, manifest.runtime) == (PYFUNC_ENTRY, None)
    assert manifest.requirements == ["mlflow==2.10.0"]  # kept: the wrapper imports it
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("input", "FP64", [-1, 3])
    ]

    spec = spec_from_path(str(package))
    assert [t.name for t in spec.metadata.inputs] == ["input"]
    for name in ("mlflow", "mlflow.pyfunc"):  # mlflow missing: a clear message when it loads
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"modelyard\[mlflow\]"):
        spec.create().load()  # type: ignore[attr-defined]


@pytest.fixture
def fake_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stand-in ``mlflow.pyfunc`` for this test only; the real mlflow (if loaded) comes back after."""
    fake = tmp_path / "fake-mlflow" / "mlflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "pyfunc.py").write_text(FAKE_PYFUNC)
    monkeypatch.syspath_prepend(str(fake.parent))
    real = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "mlflow"}
    try:
        yield
    finally:
        for name in [name for name in sys.modules if name.split(".")[0] == "mlflow"]:
            del sys.modules[name]
        sys.modules.update(real)


@pytest.mark.usefixtures("fake_mlflow")
def test_the_pyfunc_wrapper_serves_through_mlflow_pyfunc(tmp_path: Path) -> None:
    package = import_mlflow(pyfunc_dir(tmp_path / "custom"), tmp_path)
    rows = np.arange(6, dtype=np.float64).reshape(2, 3)
    with TestClient(build_app(Settings(models=[ModelConfig(path=str(package))]))) as client:
        predict = infer(client, "/v2/models/custom/infer", "input", rows, "FP64")["predict"]
    np.testing.assert_allclose(predict["data"], rows.sum(axis=1) + 0.5)


def test_column_signatures_map_each_column_for_pyfunc(tmp_path: Path) -> None:
    signature = column_signature(["age", "city"], output="long")
    inputs = json.loads(signature["inputs"])
    inputs[1]["type"] = "string"
    signature["inputs"] = json.dumps(inputs)
    directory = mlflow_dir(tmp_path / "cols", {"python_function": {"loader_module": "x"}}, signature, "")
    manifest = read_manifest(import_mlflow(directory, tmp_path))
    assert [(t.name, t.datatype, list(t.shape)) for t in manifest.signature.inputs] == [
        ("age", "FP64", [-1]),
        ("city", "BYTES", [-1]),
    ]
    assert [(t.name, t.datatype) for t in manifest.signature.outputs] == [("predict", "INT64")]


@pytest.mark.parametrize(
    ("mlmodel", "message"),
    [
        (None, "no MLmodel"),
        ("flavors: [not, a, mapping]\n", "flavors"),
        ("flavors: {keras: {}}\n", "no flavor modelyard can serve"),
        ("flavors: {python_function: {}}\nsignature: {inputs: 'not json'}\n", "not JSON"),
        ("flavors: {python_function: {}}\nsignature: oops\n", "signature must be a mapping"),
        ("flavors: {python_function: {}}\nsignature: [1, 2]\n", "signature must be a mapping"),
        (
            "flavors: {python_function: {}}\nsignature: {inputs: [{type: tensor, tensor-spec: oops}]}\n",
            "tensor-spec is not a mapping",
        ),
        ("flavors: {1: {}, keras: {}}\n", "no flavor modelyard can serve"),
    ],
    ids=[
        "missing",
        "bad-flavors",
        "unknown-flavor",
        "bad-signature",
        "signature-string",
        "signature-list",
        "tensor-spec-string",
        "flavor-not-a-string",
    ],
)
def test_bad_mlflow_directories_are_refused_naming_mlmodel(
    tmp_path: Path, mlmodel: str | None, message: str
) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "x.txt").write_text("x")
    if mlmodel is not None:
        (directory / "MLmodel").write_text(mlmodel)
    with pytest.raises(PackageInvalid, match=message) as caught:
        import_mlflow(directory, tmp_path)
    assert caught.value.field == "MLmodel"
