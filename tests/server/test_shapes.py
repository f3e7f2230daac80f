"""Impossible shapes are a 400 naming the field, never a 500 with a traceback.

``[2**62, 0]`` has no elements, so it passed the element-count check, and numpy then refused to
make an array of it ("array is too big"): a 500. Every dimension now counts, zeros aside.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models


@modelyard.model(name="free")
class Free:
    """No signature: any tensor reaches the codec's checks alone."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.zeros(1, np.float32)}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(
        build_app(Settings(), [models.Picky, Free]), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def nested(depth: int) -> list[Any]:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def tensor(shape: list[Any], datatype: str = "FP32", **fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, **fields}]}


IMPOSSIBLE = [
    [2**62, 0],
    [0, 2**62],
    [2**31, 2**31, 0],
    [2**40, 0, 3],
    [2**64 - 1],
    [2**31 + 1],
    [65536, 65536],
]


@pytest.mark.parametrize("shape", IMPOSSIBLE, ids=str)
@pytest.mark.parametrize("model", ["picky", "free"])
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_an_impossible_shape_with_json_data_is_400_naming_the_shape(
    client: TestClient, shape: list[int], model: str, datatype: str
) -> None:
    answer = client.post(f"/v2/models/{model}/infer", json=tensor(shape, datatype, data=[]))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "inputs[0].shape"
    assert "too large" in answer.json()["error"]


@pytest.mark.parametrize("shape", IMPOSSIBLE, ids=str)
@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_an_impossible_shape_with_binary_data_is_400_naming_the_shape(
    client: TestClient, shape: list[int], datatype: str
) -> None:
    header = json.dumps(tensor(shape, datatype, parameters={"binary_data_size": 0})).encode()
    answer = client.post(
        "/v2/models/free/infer", content=header, headers={"inference-header-content-length": str(len(header))}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "inputs[0].shape"


@pytest.mark.parametrize(
    "shape", [[-1, 1], [1, -(2**62)], [1.5], [True], ["1"], [None], "3", 3, [[1]], [1] * 33], ids=str
)
def test_shapes_that_are_not_lists_of_sizes_are_400(client: TestClient, shape: Any) -> None:
    answer = client.post("/v2/models/picky/infer", json=tensor(shape, data=[1.0]))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "inputs[0].shape"


def test_a_shape_too_large_for_json_numbers_is_400(client: TestClient) -> None:
    body = b'{"inputs":[{"name":"x","shape":[' + b"9" * 40 + b'],"datatype":"FP32","data":[]}]}'
    answer = client.post("/v2/models/free/infer", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] in ("body", "inputs[0].shape")  # orjson may read it as a float


def test_empty_tensors_with_large_dimensions_are_still_served(client: TestClient) -> None:
    """Zero elements are fine when the shape is possible: [2**31, 0] is an empty array numpy makes."""
    answer = client.post("/v2/models/free/infer", json=tensor([2**31, 0], data=[]))
    assert answer.status_code == 200, answer.text
    header = json.dumps(tensor([0, 2**20], "BYTES", parameters={"binary_data_size": 0})).encode()
    answer = client.post(
        "/v2/models/free/infer", content=header, headers={"inference-header-content-length": str(len(header))}
    )
    assert answer.status_code == 200, answer.text


def test_data_that_disagrees_with_the_shape_is_400_naming_data(client: TestClient) -> None:
    for data in ([1.0, 2.0, 3.0], [[1.0], [2.0], [3.0]], [[]] * 5):
        answer = client.post("/v2/models/picky/infer", json=tensor([2, 1], data=data))
        assert (answer.status_code, answer.json()["field"]) == (400, "inputs[0].data"), answer.text
    raw = struct.pack("<3f", 1, 2, 3)
    header = json.dumps(tensor([2, 1], parameters={"binary_data_size": len(raw)})).encode()
    answer = client.post(
        "/v2/models/picky/infer",
        content=header + raw,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "inputs[0].parameters.binary_data_size"


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[[]]]},
        {"instances": [[1], [1, 2]]},
        {"inputs": nested(70)},
        {"instances": [{"x": 1}, {"y": 2}]},
        {"instances": [None]},
    ],
    ids=str,
)
def test_odd_tf_serving_tensors_are_400_not_500(client: TestClient, body: dict[str, Any]) -> None:
    answer = client.post("/v1/models/picky:predict", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["kind"] == "invalid_input"
