"""The ONNX runtime, end to end: tiny graphs built with onnx.helper, served over OIP REST."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from starlette.testclient import TestClient

from tests.support import tensor


def _save(graph: onnx.GraphProto, path: Path, **metadata: str) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime this project supports
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def affine_model(path: Path, batch: str | int = "batch") -> Path:
    """y = x * 2 + 1 on FP32 [batch, 3]; ``batch`` is a symbolic name or a fixed size."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        initializer=[two, one],
    )
    return _save(graph, path, author="tests")


def echo_strings_model(path: Path) -> Path:
    """Identity on a string tensor [n]."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["n"])],
    )
    return _save(graph, path)


def metric(client: TestClient, name: str, model: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^{name}\{{model="{model}",version="1"\}} (\S+)$', text, re.MULTILINE)
    assert found is not None, f"{name} for {model} not in /metrics"
    return float(found.group(1))


def test_metadata_is_read_from_the_file(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"))
    doc = client.get("/v2/models/affine").json()
    assert doc["platform"] == "onnxruntime_onnx"
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    # custom metadata_props become labels, beside where the model runs
    assert doc["parameters"]["labels"] == {"author": "tests", "device": "cpu"}


def test_inference_is_correct(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    response = client.post("/v2/models/affine/infer", json={"inputs": [tensor("x", x)]})
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["name"] == "y"
    assert out["shape"] == [2, 3]
    np.testing.assert_allclose(out["data"], (x * 2 + 1).ravel())


def fire(client: TestClient, url: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at once, one thread each; returns the responses in order."""
    barrier = threading.Barrier(len(bodies))
    responses: list[Any] = [None] * len(bodies)

    def call(i: int) -> None:
        barrier.wait()
        responses[i] = client.post(url, json=bodies[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_concurrent_requests_are_batched(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"), max_latency_ms=50)
    n = 32
    bodies = [{"inputs": [tensor("x", np.full((1, 3), i, dtype=np.float32))]} for i in range(n)]
    responses = fire(client, "/v2/models/affine/infer", bodies)
    for i, response in enumerate(responses):  # every request got its own row back, not a batch-mate's
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [i * 2 + 1] * 3
    assert metric(client, "modelyard_inference_count_total", "affine") == n
    assert metric(client, "modelyard_inference_exec_count_total", "affine") < n
    config = client.get("/v2/models/affine/config").json()
    assert config["max_batch_size"] == 64  # Settings.default_max_batch_size
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]


def test_fixed_batch_dimension_turns_batching_off(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "fixed.onnx", batch=2), max_latency_ms=50)
    assert client.get("/v2/models/fixed").json()["inputs"][0]["shape"] == [2, 3]
    n = 8
    bodies = [{"inputs": [tensor("x", np.full((2, 3), i, dtype=np.float32))]} for i in range(n)]
    responses = fire(client, "/v2/models/fixed/infer", bodies)
    # Stacked, two requests would make a [4, 3] batch, which this graph refuses.
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [i * 2 + 1] * 6
    assert metric(client, "modelyard_inference_exec_count_total", "fixed") == n
    config = client.get("/v2/models/fixed/config").json()  # Triton's view agrees: no batching
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config


def test_wrong_shape_is_a_400_naming_the_input(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"))
    x = np.ones((2, 4), dtype=np.float32)
    response = client.post("/v2/models/affine/infer", json={"inputs": [tensor("x", x)]})
    assert response.status_code == 400
    body = response.json()
    assert "'x'" in body["error"]
    assert body["field"] == "x.shape"


def test_wrong_datatype_is_a_400(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"))
    x = np.ones((1, 3), dtype=np.float64)
    response = client.post("/v2/models/affine/infer", json={"inputs": [tensor("x", x, "FP64")]})
    assert response.status_code == 400
    assert response.json()["field"] == "x.datatype"


def test_string_tensors_round_trip(tmp_path: Path, serve: Any) -> None:
    client = serve(echo_strings_model(tmp_path / "echo.onnx"))
    doc = client.get("/v2/models/echo").json()
    assert doc["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["héllo", "world"]}]}
    response = client.post("/v2/models/echo/infer", json=body)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out == {"name": "same", "datatype": "BYTES", "shape": [2], "data": ["héllo", "world"]}


def test_name_and_version_come_from_the_config(tmp_path: Path, serve: Any) -> None:
    client = serve(affine_model(tmp_path / "affine.onnx"), name="scaler", version="7")
    doc = client.get("/v2/models/scaler").json()
    assert doc["name"] == "scaler"
    assert doc["versions"] == ["7"]
    x = np.zeros((1, 3), dtype=np.float32)
    response = client.post("/v2/models/scaler/versions/7/infer", json={"inputs": [tensor("x", x)]})
    assert response.json()["outputs"][0]["data"] == [1.0, 1.0, 1.0]
    assert client.get("/v2/models/affine").status_code == 404
