"""Choosing the runtime from a path: suffixes, errors, names, and ``file.py:ClassName``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, save_model
from starlette.testclient import TestClient

from modelyard.errors import InvalidInput
from modelyard.package.loading import spec_from_config, spec_from_path
from modelyard.runtimes.formats import SUFFIXES
from modelyard.runtimes.onnx import OnnxModel
from modelyard.runtimes.sklearn import SklearnModel
from modelyard.runtimes.torch import TorchModel
from modelyard.server import ModelConfig, Settings
from modelyard.server.app import build_app

AUTHOR_MODEL = textwrap.dedent(
    """
    import numpy as np

    import modelyard
    from modelyard import TensorSpec


    class Tripler:
        def load(self):
            self.factor = 3

        def predict(self, inputs):
            return {"y": inputs["x"] * self.factor}


    @modelyard.model(name="declared", inputs=[TensorSpec("x", "INT64", [-1])])
    class Declared:
        def predict(self, inputs):
            return inputs["x"] + 1


    NOT_A_MODEL = 42
    """
)


@pytest.fixture
def author_file(tmp_path: Path) -> Path:
    path = tmp_path / "author_models.py"
    path.write_text(AUTHOR_MODEL)
    return path


def touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def onnx_identity(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save_model(model, str(path))
    return path


@pytest.mark.parametrize(
    ("suffix", "cls", "platform"),
    [
        (".onnx", OnnxModel, "onnxruntime_onnx"),
        (".joblib", SklearnModel, "sklearn_sklearn"),
        (".pkl", SklearnModel, "sklearn_sklearn"),
        (".PICKLE", SklearnModel, "sklearn_sklearn"),  # suffixes are case-insensitive
        (".pt", TorchModel, "pytorch_torchscript"),
        (".pth", TorchModel, "pytorch_torchscript"),
        (".ts", TorchModel, "pytorch_torchscript"),
        (".pt2", TorchModel, "pytorch_export"),
    ],
)
def test_the_suffix_chooses_the_runtime(tmp_path: Path, suffix: str, cls: type, platform: str) -> None:
    spec = spec_from_path(str(touch(tmp_path / f"model{suffix}")))  # nothing is loaded yet
    assert spec.cls is cls
    assert spec.metadata.platform == platform
    assert spec.name == "model"  # the file's stem
    assert spec.version == "1"
    assert spec.batch_spec is not None
    assert spec.batch_spec.stack
    assert spec.init_kwargs["path"] == str(tmp_path / f"model{suffix}")


def test_every_suffix_in_the_table_is_tested() -> None:
    assert set(SUFFIXES) == {".onnx", ".joblib", ".pkl", ".pickle", ".pt", ".pth", ".ts", ".pt2"}


def test_unknown_suffix_names_the_supported_formats(tmp_path: Path) -> None:
    path = touch(tmp_path / "model.h5")
    with pytest.raises(InvalidInput, match=r"model\.h5") as raised:
        spec_from_path(str(path))
    for suffix in (".onnx", ".joblib", ".pt2", "file.py:ClassName"):
        assert suffix in str(raised.value)


def test_missing_file_is_file_not_found_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx") as missing:
        spec_from_path(str(tmp_path / "nope.onnx"))
    assert missing.value.filename == str(tmp_path / "nope.onnx")  # the CLI's cue for a user error
    with pytest.raises(FileNotFoundError, match=r"nope\.py") as missing:
        spec_from_path(f"{tmp_path / 'nope.py'}:Model")
    assert missing.value.filename == str(tmp_path / "nope.py")


def test_name_version_and_batching_come_from_the_config(tmp_path: Path) -> None:
    path = touch(tmp_path / "model.onnx")
    config = ModelConfig(path=str(path), name="renamed", version="3", max_batch_size=8, max_latency_ms=0)
    spec = spec_from_config(config, Settings(intra_op_threads=2))
    assert (spec.name, spec.version) == ("renamed", "3")
    assert spec.batch_spec is not None
    assert (spec.batch_spec.max_batch_size, spec.batch_spec.max_latency_ms) == (8, 0)
    assert spec.init_kwargs == {
        "path": str(path), "name": "renamed", "version": "3", "intra_op_threads": 2, "device": "cpu"
    }  # fmt: skip
    defaults = spec_from_config(ModelConfig(path=str(path)), Settings(default_max_batch_size=5))
    assert defaults.batch_spec is not None
    assert defaults.batch_spec.max_batch_size == 5


def test_sklearn_gets_no_thread_setting(tmp_path: Path) -> None:
    spec = spec_from_path(str(touch(tmp_path / "model.joblib")))
    assert "intra_op_threads" not in spec.init_kwargs


def test_served_name_defaults_to_the_stem_and_can_be_overridden(tmp_path: Path) -> None:
    path = onnx_identity(tmp_path / "my-model.onnx")
    settings = Settings(models=[ModelConfig(path=str(path)), ModelConfig(path=str(path), name="other")])
    with TestClient(build_app(settings)) as client:
        for name in ("my-model", "other"):
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.5, 2.5]}]}
            response = client.post(f"/v2/models/{name}/infer", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [1.5, 2.5]


def test_an_authors_class_is_loaded_from_a_python_file(author_file: Path) -> None:
    spec = spec_from_path(f"{author_file}:Tripler")
    assert spec.cls.__name__ == "Tripler"
    assert spec.name == "tripler"  # a plain class: its name, lower-cased
    assert spec.batch_spec is None  # no @batch, no override
    with TestClient(build_app(Settings(models=[ModelConfig(path=f"{author_file}:Tripler")]))) as client:
        body = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}
        response = client.post("/v2/models/tripler/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [3, 6]


def test_an_authors_decorated_spec_keeps_its_metadata_unless_overridden(author_file: Path) -> None:
    spec = spec_from_path(f"{author_file}:Declared")
    assert spec.name == "declared"
    assert spec.metadata.inputs[0].datatype == "INT64"
    renamed = spec_from_config(
        ModelConfig(path=f"{author_file}:Declared", name="custom", version="2", max_batch_size=4),
        Settings(),
    )
    assert (renamed.name, renamed.version) == ("custom", "2")
    assert renamed.batch_spec is not None
    assert renamed.batch_spec.max_batch_size == 4
    assert renamed.init_kwargs == {}
    assert renamed.create().predict({"x": np.array([1])}).tolist() == [2]


def test_bad_python_targets_say_what_is_wrong(author_file: Path) -> None:
    with pytest.raises(InvalidInput, match="Missing"):
        spec_from_path(f"{author_file}:Missing")
    with pytest.raises(InvalidInput, match="neither"):
        spec_from_path(f"{author_file}:NOT_A_MODEL")
