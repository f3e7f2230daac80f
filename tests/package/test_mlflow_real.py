"""A real MLflow pyfunc model (saved by mlflow itself) imported, packaged and served.

mlflow-skinny and pandas are development dependencies, so this runs everywhere the suite runs; the
model is saved in a subprocess so that mlflow's logging set-up stays out of this process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelyard.package import read_manifest
from modelyard.package.mlflow import PYFUNC_ENTRY, import_mlflow
from modelyard.server import ModelConfig, Settings
from modelyard.server.app import build_app

SAVE = textwrap.dedent(
    """
    import sys

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature


    class Weighted(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["a"] + 2 * model_input["b"]


    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    signature = infer_signature(frame, Weighted().predict(None, frame))
    mlflow.pyfunc.save_model(sys.argv[1], python_model=Weighted(), signature=signature)
    """
)


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("mlflow") / "weighted"
    result = subprocess.run(
        [sys.executable, "-c", SAVE, str(target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
def test_a_real_pyfunc_model_serves_through_its_column_signature(mlflow_model: Path, tmp_path: Path) -> None:
    package = import_mlflow(mlflow_model, tmp_path)
    manifest = read_manifest(package)
    assert manifest.entry == PYFUNC_ENTRY
    assert [(t.name, t.datatype) for t in manifest.signature.inputs] == [("a", "FP64"), ("b", "FP64")]
    assert any(req.startswith("mlflow") for req in manifest.requirements)

    a, b = np.array([1.0, 2.0, -3.5]), np.array([3.0, 4.0, 0.25])
    body = {
        "inputs": [
            {"name": "a", "datatype": "FP64", "shape": [3], "data": a.tolist()},
            {"name": "b", "datatype": "FP64", "shape": [3], "data": b.tolist()},
        ]
    }
    with TestClient(build_app(Settings(models=[ModelConfig(path=str(package))]))) as client:
        response = client.post(f"/v2/models/{manifest.name}/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    np.testing.assert_allclose(output["data"], a + 2 * b)
