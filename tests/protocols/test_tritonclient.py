"""The real Triton HTTP client against a real server (uvicorn on a free port, in a thread).

tritonclient is the reference OIP client: binary inputs by default, binary outputs requested,
no Content-Type, ``GET /v2`` without a slash, errors read from ``{"error": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN, serve_in_thread

httpclient = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")
InferenceServerException = triton_utils.InferenceServerException

X = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) * 1.25


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = build_app(Settings(), [models.Doubler, models.AsyncEcho, models.Lister, models.Picky])
    with serve_in_thread(app) as address:
        yield address


@pytest.fixture
def client(url: str) -> Iterator[Any]:
    triton = httpclient.InferenceServerClient(url)
    try:
        yield triton
    finally:
        triton.close()


def fp32_input(array: np.ndarray, name: str = "x", binary: bool = True) -> Any:
    tensor = httpclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


# -- health and metadata -------------------------------------------------------------------------


def test_health(client: Any) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("doubler") is True
    assert client.is_model_ready("doubler", "1") is True
    assert client.is_model_ready("nope") is False


def test_server_metadata(client: Any) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "modelyard"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_config(client: Any) -> None:
    meta = client.get_model_metadata("doubler")
    assert meta["name"] == "doubler"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert client.get_model_metadata("doubler", "1") == meta
    config = client.get_model_config("doubler")
    assert config["max_batch_size"] == 16
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == [3]


def test_repository_index(client: Any) -> None:
    index = client.get_model_repository_index()
    assert {row["name"] for row in index} == {"doubler", "async_echo", "lister", "picky"}
    assert all(row["state"] == "READY" for row in index)


# -- inference -----------------------------------------------------------------------------------


def test_infer_binary_in_binary_out(client: Any) -> None:
    result = client.infer(
        "doubler", [fp32_input(X)], outputs=[httpclient.InferRequestedOutput("y")], request_id="r-1"
    )
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    response = result.get_response()
    assert response["id"] == "r-1"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == X.nbytes  # it was binary


def test_infer_without_listing_outputs(client: Any) -> None:
    result = client.infer("doubler", [fp32_input(X)])
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    # no outputs listed: tritonclient asks for binary_data_output, and gets it
    assert "binary_data_size" in result.get_response()["outputs"][0]["parameters"]


def test_infer_json_in_json_out(client: Any) -> None:
    result = client.infer(
        "doubler",
        [fp32_input(X, binary=False)],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=False)],
    )
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    output = result.get_response()["outputs"][0]
    assert output["data"] == (X * 2).ravel().tolist()
    assert "parameters" not in output


def test_infer_explicit_version(client: Any) -> None:
    result = client.infer("doubler", [fp32_input(X)], model_version="1")
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_round_trip(client: Any, binary: bool) -> None:
    words = np.array([b"alpha", b"", "h\u00e9llo".encode(), b"with space"], dtype=np.object_).reshape(2, 2)
    tensor = httpclient.InferInput("s", [2, 2], "BYTES")
    tensor.set_data_from_numpy(words, binary_data=binary)
    result = client.infer(
        "async_echo", [tensor], outputs=[httpclient.InferRequestedOutput("s", binary_data=binary)]
    )
    out = result.as_numpy("s")
    assert out.shape == (2, 2)
    assert [bytes(v) if isinstance(v, bytes) else str(v).encode() for v in out.ravel()] == list(words.ravel())


def test_several_datatypes_round_trip(client: Any) -> None:
    arrays = {
        "i8": ("INT8", np.array([-128, 0, 127], dtype=np.int8)),
        "u16": ("UINT16", np.array([[0, 65535]], dtype=np.uint16)),
        "i64": ("INT64", np.array([-(2**62), 2**62], dtype=np.int64)),
        "f16": ("FP16", np.array([0.5, -1.25], dtype=np.float16)),
        "f64": ("FP64", np.array([1e-300, 1e300], dtype=np.float64)),
        "b": ("BOOL", np.array([True, False, True], dtype=np.bool_)),
    }
    inputs = []
    for name, (datatype, array) in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("async_echo", inputs)
    for name, (_, array) in arrays.items():
        out = result.as_numpy(name)
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)


def test_bf16_input(client: Any) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([1.5, -2.0, 3.140625], dtype=ml_dtypes.bfloat16)
    tensor = httpclient.InferInput("h", [3], "BF16")
    tensor.set_data_from_numpy(values)
    result = client.infer("async_echo", [tensor])
    np.testing.assert_array_equal(result.as_numpy("h"), np.array([1.5, -2.0, 3.140625], np.float32))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_request_and_response_compression(client: Any, algorithm: str) -> None:
    big = np.tile(X, (100, 1))  # compressible
    result = client.infer(
        "doubler",
        [fp32_input(big)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("y"), big * 2)


def test_async_infer_concurrent(url: str) -> None:
    # One connection per in-flight request, as tritonclient's docs advise for async_infer.
    client = httpclient.InferenceServerClient(url, concurrency=6)
    try:
        arrays = [X + i for i in range(6)]
        handles = [client.async_infer("doubler", [fp32_input(a)]) for a in arrays]
        for array, handle in zip(arrays, handles, strict=True):
            np.testing.assert_array_equal(handle.get_result().as_numpy("y"), array * 2)
    finally:
        client.close()


def test_list_batched_model(client: Any) -> None:
    result = client.infer("lister", [fp32_input(np.array([1.0, 2.0, 3.5], np.float32))])
    np.testing.assert_array_equal(result.as_numpy("total"), np.array([65.0]))


# -- errors carry our message --------------------------------------------------------------------


def test_unknown_model_raises_with_our_message(client: Any) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [fp32_input(X)])
    assert "model 'nope' not found" in info.value.message()
    assert str(info.value.status()) == "404"
    with pytest.raises(InferenceServerException, match="model 'nope' not found"):
        client.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="not found"):
        client.get_model_config("doubler", "7")


def test_bad_shape_raises_with_our_message(client: Any) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("doubler", [fp32_input(np.zeros((1, 2), np.float32))])
    assert "input 'x' has shape [1, 2]" in info.value.message()
    assert str(info.value.status()) == "400"


def test_model_error_raises_with_the_models_message(client: Any) -> None:
    with pytest.raises(InferenceServerException, match="negative values are not allowed"):
        client.infer("picky", [fp32_input(np.array([[-1.0]], np.float32))])
    result = client.infer("picky", [fp32_input(np.array([[1.0]], np.float32))])
    np.testing.assert_array_equal(result.as_numpy("y"), [[2.0]])


def test_unload_and_load() -> None:
    # its own server: unloading must not disturb the other tests' models
    app = build_app(Settings(model_control=True, model_control_token=CONTROL_TOKEN), [models.Lister])
    with serve_in_thread(app) as address:
        triton = httpclient.InferenceServerClient(address)
        try:
            triton.unload_model("lister", headers=CONTROL_HEADERS)
            assert triton.is_model_ready("lister") is False
            assert triton.is_server_ready() is False
            with pytest.raises(InferenceServerException, match="not ready"):
                triton.infer("lister", [fp32_input(np.array([1.0], np.float32))])
            triton.load_model("lister", headers=CONTROL_HEADERS)
            assert triton.is_model_ready("lister") is True
            result = triton.infer("lister", [fp32_input(np.array([1.0], np.float32))])
            np.testing.assert_array_equal(result.as_numpy("total"), [10.0])
            with pytest.raises(InferenceServerException, match="not found"):
                triton.load_model("nope", headers=CONTROL_HEADERS)
        finally:
            triton.close()
