"""Serving packages: the loader verifies, unpacks to the cache and serves the entry or the model file."""

from __future__ import annotations

from pathlib import Path

import httpx
import joblib
import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from modelyard.errors import PackageInvalid
from modelyard.package import build_package
from modelyard.package.loading import spec_from_config, spec_from_path
from modelyard.server import ModelConfig, Settings
from modelyard.server.app import build_app
from tests.package.conftest import FIXED_TIME, author_dir, linear_onnx, onnx_dir, sklearn_dir
from tests.package.test_archive import contents, write


def infer(client: TestClient | httpx.Client, url: str, name: str, array: np.ndarray, datatype: str) -> dict:  # type: ignore[type-arg]
    body = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}
        ]
    }
    response = client.post(url, json=body)
    assert response.status_code == 200, response.text
    return {out["name"]: out for out in response.json()["outputs"]}


def test_an_author_package_serves_its_class_with_its_files(tmp_path: Path, home: Path) -> None:
    package = build_package(author_dir(tmp_path / "src"), tmp_path)
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    with TestClient(build_app(Settings(models=[ModelConfig(path=str(package))]))) as client:
        meta = client.get("/v2/models/scaler/versions/4").json()
        assert [i["name"] for i in meta["inputs"]] == ["x"]
        y = infer(client, "/v2/models/scaler/versions/4/infer", "x", x, "FP64")["y"]
        np.testing.assert_allclose(y["data"], (x * [1.0, 2.0, 3.0]).ravel())
    assert len(list((home / "packages").iterdir())) == 1


def test_packages_mix_with_plain_files_and_config_names_override(tmp_path: Path) -> None:
    onnx_package = build_package(onnx_dir(tmp_path / "ranker"), tmp_path, version="3")
    sklearn_package = build_package(sklearn_dir(tmp_path / "reg"), tmp_path, name="reg")
    plain = linear_onnx(tmp_path / "plain.onnx", seed=9)
    settings = Settings(
        models=[
            ModelConfig(path=str(onnx_package)),
            ModelConfig(path=str(sklearn_package), name="renamed", version="9"),
            ModelConfig(path=str(plain)),
        ]
    )
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    rows = np.random.default_rng(1).normal(size=(3, 4))
    with TestClient(build_app(settings)) as client:
        session = ort.InferenceSession(
            str(tmp_path / "ranker" / "scorer.onnx"), providers=["CPUExecutionProvider"]
        )
        y = infer(client, "/v2/models/ranker/versions/3/infer", "x", x, "FP32")["y"]
        np.testing.assert_allclose(y["data"], session.run(["y"], {"x": x})[0].ravel(), rtol=1e-6)
        predict = infer(client, "/v2/models/renamed/versions/9/infer", "input", rows, "FP64")["predict"]
        expected = joblib.load(tmp_path / "reg" / "regressor.joblib").predict(rows)
        np.testing.assert_allclose(predict["data"], expected, rtol=1e-9)
        assert client.get("/v2/models/plain").status_code == 200
        assert client.get("/v2/models/reg").status_code == 404


def test_spec_defaults_come_from_the_manifest(tmp_path: Path) -> None:
    package = build_package(onnx_dir(tmp_path / "m"), tmp_path, name="ranker", version="5")
    spec = spec_from_path(str(package))
    assert (spec.name, spec.version, spec.metadata.platform) == ("ranker", "5", "onnxruntime_onnx")
    assert spec_from_path(str(package), name="other", version="6").name == "other"


def test_an_altered_package_is_refused_before_anything_is_loaded(tmp_path: Path, home: Path) -> None:
    package = build_package(author_dir(tmp_path / "src"), tmp_path, created_at=FIXED_TIME)
    members = [(n, b"print('pwned')\n" if n == "files/model.py" else d) for n, d in contents(package)]
    altered = write(tmp_path / "altered.modelyard", members)
    with pytest.raises(PackageInvalid, match="altered") as caught:
        spec_from_config(ModelConfig(path=str(altered)), Settings())
    assert caught.value.field == "model.py"
    assert not (home / "packages").exists() or not any((home / "packages").iterdir())


def test_a_missing_package_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.modelyard"):
        spec_from_path(str(tmp_path / "nowhere.modelyard"))
