"""TF Serving REST adapter: status, metadata and :predict in the row and columnar formats."""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections.abc import Iterator

import httpx2
import numpy as np
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard import TensorSpec
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN


@modelyard.model(
    name="pair",
    inputs=[TensorSpec("a", "FP32", [-1, 2]), TensorSpec("b", "INT64", [-1])],
    outputs=[TensorSpec("total", "FP32", [-1]), TensorSpec("double_b", "INT64", [-1])],
)
class Pair:
    """Two inputs, two outputs sharing the batch dimension."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = inputs["a"].sum(axis=1) + inputs["b"].astype(np.float32)
        return {"total": total, "double_b": inputs["b"] * 2}


@modelyard.model(
    name="texts",
    inputs=[TensorSpec("text", "BYTES", [-1])],
    outputs=[TensorSpec("upper", "BYTES", [-1]), TensorSpec("raw_bytes", "BYTES", [-1])],
)
class Texts:
    """BYTES in; one text output and one ``*_bytes`` output (returned as b64)."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        text = inputs["text"]
        upper = np.array([t.decode().upper().encode() for t in text], dtype=object)
        return {"upper": upper, "raw_bytes": text}


@modelyard.model(
    name="scaler", inputs=[TensorSpec("x", "FP64", [-1])], outputs=[TensorSpec("y", "FP64", [-1])]
)
class Scaler:
    """Multiplies by ``factor``, so two versions built from one class answer differently."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return inputs["x"] * self.factor


@modelyard.model(name="uneven", inputs=[TensorSpec("x", "FP32", [-1])])
class Uneven:
    """Outputs that do not share dimension 0: fine as columns, impossible to split into rows."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"each": inputs["x"], "mean": np.array([inputs["x"].mean()])}


@pytest.fixture
def tf_client() -> Iterator[TestClient]:
    specs = [
        models.Doubler,
        models.AsyncEcho,
        models.Unwell,
        Pair,
        Texts,
        Uneven,
        Scaler,
        Scaler.replace(version="2", init_kwargs={"factor": 3.0}),
    ]
    settings = Settings(model_control=True, model_control_token=CONTROL_TOKEN)
    with TestClient(build_app(settings, specs), headers=CONTROL_HEADERS) as test_client:
        yield test_client


def _error(response: httpx2.Response, status: int, kind: str) -> dict[str, str]:
    """Assert an error in the shared schema; return its body."""
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["kind"] == kind
    assert isinstance(doc["error"], str)
    assert doc["error"]
    return doc


# -- status ---------------------------------------------------------------------------------------


def test_status_of_a_ready_model(client: TestClient) -> None:
    response = client.get("/v1/models/doubler")
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_status_lists_every_version_unless_one_is_named(tf_client: TestClient) -> None:
    all_versions = tf_client.get("/v1/models/scaler").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in all_versions] == [("1", "AVAILABLE"), ("2", "AVAILABLE")]
    one = tf_client.get("/v1/models/scaler/versions/2").json()["model_version_status"]
    assert [s["version"] for s in one] == ["2"]


def test_status_of_a_failed_model_is_200_with_end_state(tf_client: TestClient) -> None:
    response = tf_client.get("/v1/models/unwell")
    assert response.status_code == 200
    (status,) = response.json()["model_version_status"]
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "UNKNOWN"
    assert "weights are corrupt" in status["status"]["error_message"]


def test_status_of_an_unloaded_model_is_end(tf_client: TestClient) -> None:
    assert tf_client.post("/v2/repository/models/scaler/unload").status_code == 200
    statuses = tf_client.get("/v1/models/scaler").json()["model_version_status"]
    assert [(s["state"], s["status"]["error_code"]) for s in statuses] == [("END", "OK"), ("END", "OK")]


def test_status_unknown_model_and_version_are_404(tf_client: TestClient) -> None:
    assert _error(tf_client.get("/v1/models/nope"), 404, "not_found")["field"] == "model"
    assert "'7'" in _error(tf_client.get("/v1/models/scaler/versions/7"), 404, "not_found")["error"]


def test_non_numeric_version_is_400_naming_it(tf_client: TestClient) -> None:
    doc = _error(tf_client.get("/v1/models/scaler/versions/latest"), 400, "invalid_input")
    assert doc["field"] == "version"
    assert "latest" in doc["error"]
    doc = _error(
        tf_client.post("/v1/models/scaler/versions/v2:predict", json={"instances": [1]}), 400, "invalid_input"
    )
    assert "v2" in doc["error"]
    doc = _error(tf_client.get("/v1/models/scaler/versions/" + "9" * 5000), 400, "invalid_input")
    assert doc["field"] == "version"


def test_labels_are_not_supported(tf_client: TestClient) -> None:
    doc = _error(tf_client.get("/v1/models/scaler/labels/stable"), 404, "not_found")
    assert "labels are not supported" in doc["error"]
    doc = _error(
        tf_client.post("/v1/models/scaler/labels/stable:predict", json={"instances": [1]}), 404, "not_found"
    )
    assert doc["field"] == "label"
    # An unknown model is reported as such, not as a label problem.
    assert _error(tf_client.get("/v1/models/nope/labels/stable"), 404, "not_found")["field"] == "model"


def test_missing_model_name_and_unknown_paths(tf_client: TestClient) -> None:
    assert _error(tf_client.get("/v1/models/"), 400, "invalid_input")["field"] == "model"
    _error(tf_client.get("/v1/models/doubler/versions/1/extra"), 404, "not_found")
    _error(tf_client.post("/v1/models/doubler", json={"instances": [[1, 2, 3]]}), 404, "not_found")
    _error(tf_client.get("/v1/models/doubler:predict"), 405, "method_not_allowed")


# -- metadata -------------------------------------------------------------------------------------


def test_metadata_has_tf_serving_shape(client: TestClient) -> None:
    response = client.get("/v1/models/doubler/metadata")
    assert response.status_code == 200
    tensor = {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
            "unknown_rank": False,
        },
    }
    assert response.json() == {
        "model_spec": {"name": "doubler", "signature_name": "", "version": "1"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {"x": {**tensor, "name": "x"}},
                        "outputs": {"y": {**tensor, "name": "y"}},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def test_metadata_dtypes_and_versions(tf_client: TestClient) -> None:
    sig = tf_client.get("/v1/models/pair/metadata").json()["metadata"]["signature_def"]["signature_def"]
    inputs = sig["serving_default"]["inputs"]
    assert inputs["a"]["dtype"] == "DT_FLOAT"
    assert inputs["b"]["dtype"] == "DT_INT64"
    texts = tf_client.get("/v1/models/texts/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert texts["serving_default"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert tf_client.get("/v1/models/scaler/metadata").json()["model_spec"]["version"] == "2"  # latest
    versioned = tf_client.get("/v1/models/scaler/versions/1/metadata").json()
    assert versioned["model_spec"]["version"] == "1"
    assert versioned["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"][
        "dtype"
    ] == ("DT_DOUBLE")
    _error(tf_client.get("/v1/models/nope/metadata"), 404, "not_found")


# -- predict --------------------------------------------------------------------------------------


def test_row_predict_single_input_and_output(client: TestClient) -> None:
    response = client.post("/v1/models/doubler:predict", json={"instances": [[1, 2, 3], [4, 5, 6]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[2, 4, 6], [8, 10, 12]]}
    named = client.post("/v1/models/doubler:predict", json={"instances": [{"x": [1, 1, 1]}]})
    assert named.json() == {"predictions": [[2, 2, 2]]}


def test_columnar_predict_single_input_and_output(client: TestClient) -> None:
    response = client.post("/v1/models/doubler:predict", json={"inputs": [[1, 2, 3]]})
    assert response.json() == {"outputs": [[2, 4, 6]]}
    named = client.post("/v1/models/doubler:predict", json={"inputs": {"x": [[0.5, 1, 2]]}})
    assert named.json() == {"outputs": [[1, 2, 4]]}


def test_row_predict_several_inputs_and_outputs(tf_client: TestClient) -> None:
    body = {"signature_name": "serving_default", "instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}
    response = tf_client.post("/v1/models/pair:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [{"total": 6.0, "double_b": 6}, {"total": 12.0, "double_b": 10}]
    }


def test_columnar_predict_several_inputs_and_outputs(tf_client: TestClient) -> None:
    response = tf_client.post(
        "/v1/models/pair:predict", json={"inputs": {"a": [[1, 2], [0, 0]], "b": [3, 1]}}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": {"total": [6.0, 1.0], "double_b": [6, 2]}}


def test_version_in_url_selects_the_version(tf_client: TestClient) -> None:
    def predict(path: str) -> object:
        return tf_client.post(path, json={"instances": [1.5]}).json()

    assert predict("/v1/models/scaler/versions/1:predict") == {"predictions": [3.0]}
    assert predict("/v1/models/scaler/versions/2:predict") == {"predictions": [4.5]}
    assert predict("/v1/models/scaler:predict") == {"predictions": [4.5]}  # latest
    assert predict("/v1/models/scaler/versions/01:predict") == {"predictions": [3.0]}  # numeric
    _error(tf_client.post("/v1/models/scaler/versions/9:predict", json={"instances": [1]}), 404, "not_found")


def test_predict_unknown_model_is_404(client: TestClient) -> None:
    assert _error(client.post("/v1/models/nope:predict", json={"instances": [1]}), 404, "not_found")[
        "field"
    ] == ("model")


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_classify_and_regress_are_501(client: TestClient, verb: str) -> None:
    body = {"examples": [{"x": 1}]}
    doc = _error(client.post(f"/v1/models/doubler:{verb}", json=body), 501, "unsupported")
    assert verb in doc["error"]


@pytest.mark.parametrize(
    "body", [{"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, {"signature_name": "serving_default"}]
)
def test_exactly_one_of_instances_or_inputs(client: TestClient, body: dict[str, object]) -> None:
    doc = _error(client.post("/v1/models/doubler:predict", json=body), 400, "invalid_input")
    assert "exactly one of 'instances'" in doc["error"]


def test_other_signature_names_are_rejected(client: TestClient) -> None:
    body = {"signature_name": "classify_images", "instances": [[1, 2, 3]]}
    doc = _error(client.post("/v1/models/doubler:predict", json=body), 400, "invalid_input")
    assert doc["field"] == "signature_name"


@pytest.mark.parametrize(
    "instances",
    [
        [[1, "a", 3]],  # a string in a float tensor
        [[1, 2, 3], [4, 5]],  # ragged
        [[True, False, True]],  # booleans are not numbers
        [[{"b64": "AAAA"}, 2, 3]],  # b64 is for BYTES inputs only
    ],
)
def test_bad_values_are_400_naming_the_input(client: TestClient, instances: list[object]) -> None:
    doc = _error(
        client.post("/v1/models/doubler:predict", json={"instances": instances}), 400, "invalid_input"
    )
    assert doc["field"] == "x"
    assert "'x'" in doc["error"]


@pytest.mark.parametrize("b", [[1.5], [2**63], [True]])
def test_integer_input_refuses_fractions_overflow_and_bools(tf_client: TestClient, b: list[object]) -> None:
    body = {"inputs": {"a": [[1, 2]], "b": b}}
    doc = _error(tf_client.post("/v1/models/pair:predict", json=body), 400, "invalid_input")
    assert doc["field"] == "b"
    assert "INT64" in doc["error"]


def test_integer_input_takes_whole_floats(tf_client: TestClient) -> None:
    response = tf_client.post("/v1/models/pair:predict", json={"inputs": {"a": [[1, 2]], "b": [3.0]}})
    assert response.json() == {"outputs": {"total": [6.0], "double_b": [6]}}


def test_float_overflow_is_400(client: TestClient) -> None:
    doc = _error(
        client.post("/v1/models/doubler:predict", json={"inputs": [[1e300, 0, 0]]}), 400, "invalid_input"
    )
    assert "range" in doc["error"]


def test_row_format_errors_name_what_is_wrong(tf_client: TestClient) -> None:
    # Several inputs need one object per instance, with the same keys in every instance.
    doc = _error(
        tf_client.post("/v1/models/pair:predict", json={"instances": [[1, 2]]}), 400, "invalid_input"
    )
    assert "['a', 'b']" in doc["error"]
    mixed = {"instances": [{"a": [1, 2], "b": 3}, {"a": [1, 2]}]}
    assert _error(tf_client.post("/v1/models/pair:predict", json=mixed), 400, "invalid_input")["field"] == (
        "instances[1]"
    )
    unknown = {"inputs": {"a": [[1, 2]], "b": [1], "c": [1]}}
    assert (
        _error(tf_client.post("/v1/models/pair:predict", json=unknown), 400, "invalid_input")["field"] == "c"
    )
    missing = {"inputs": {"a": [[1, 2]]}}
    assert (
        _error(tf_client.post("/v1/models/pair:predict", json=missing), 400, "invalid_input")["field"] == "b"
    )


def test_wrong_shape_is_400(client: TestClient) -> None:
    doc = _error(
        client.post("/v1/models/doubler:predict", json={"instances": [[1, 2]]}), 400, "invalid_input"
    )
    assert doc["field"] == "x.shape"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/v1/models/doubler:predict", content=b'{"instances": [[1, 2, 3]',
                           headers={"content-type": "application/json"})  # fmt: skip
    assert _error(response, 400, "invalid_input")["field"] == "body"
    assert (
        _error(client.post("/v1/models/doubler:predict", json=[1, 2]), 400, "invalid_input")["field"]
        == "body"
    )


def test_b64_in_and_out(tf_client: TestClient) -> None:
    raw = "héllo".encode()
    body = {"instances": [{"b64": base64.b64encode(raw).decode()}, "plain"]}
    response = tf_client.post("/v1/models/texts:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "predictions": [
            {"upper": "HÉLLO", "raw_bytes": {"b64": base64.b64encode(raw).decode()}},
            {"upper": "PLAIN", "raw_bytes": {"b64": base64.b64encode(b"plain").decode()}},
        ]
    }


def test_bad_b64_is_400(tf_client: TestClient) -> None:
    body = {"instances": [{"b64": "not base64!"}]}
    doc = _error(tf_client.post("/v1/models/texts:predict", json=body), 400, "invalid_input")
    assert doc["field"] == "text"
    doc = _error(tf_client.post("/v1/models/texts:predict", json={"instances": [5]}), 400, "invalid_input")
    assert "BYTES" in doc["error"]


def test_nan_and_infinity_literals_are_accepted_and_emitted(client: TestClient) -> None:
    body = b'{"instances": [[NaN, 1.5, -Infinity]]}'
    response = client.post(
        "/v1/models/doubler:predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert "NaN" in response.text
    ((nan, three, minus_inf),) = json.loads(response.text)["predictions"]
    assert math.isnan(nan)
    assert three == 3.0
    assert minus_inf == -math.inf


def test_model_without_signature_gets_the_request_key_as_input_name(client: TestClient) -> None:
    rows = client.post("/v1/models/async_echo:predict", json={"instances": [1, 2, 3]})
    assert rows.json() == {"predictions": [1, 2, 3]}  # echoed input "instances", name dropped
    columns = client.post("/v1/models/async_echo:predict", json={"inputs": {"n": [1.5], "s": ["hi"]}})
    assert columns.json() == {"outputs": {"n": [1.5], "s": ["hi"]}}


def test_outputs_without_a_shared_batch_dimension(tf_client: TestClient) -> None:
    doc = _error(
        tf_client.post("/v1/models/uneven:predict", json={"instances": [1, 3]}), 400, "invalid_input"
    )
    assert "columnar" in doc["error"]
    response = tf_client.post("/v1/models/uneven:predict", json={"inputs": [1, 3]})
    assert response.json() == {"outputs": {"each": [1.0, 3.0], "mean": [2.0]}}


def test_gzip_body_is_accepted(client: TestClient) -> None:
    body = gzip.compress(json.dumps({"instances": [[1, 1, 1]]}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/v1/models/doubler:predict", content=body, headers=headers)
    assert response.json() == {"predictions": [[2, 2, 2]]}


def test_oversized_body_is_413() -> None:
    app = build_app(Settings(max_body_bytes=1024), [models.Doubler])
    with TestClient(app) as small:
        body = {"instances": [[1.0, 2.0, 3.0]] * 200}
        doc = _error(small.post("/v1/models/doubler:predict", json=body), 413, "too_large")
        assert doc["field"] == "body"
        assert small.post("/v1/models/doubler:predict", json={"instances": [[1, 2, 3]]}).status_code == 200


def test_metrics_are_counted_under_protocol_v1(client: TestClient) -> None:
    client.post("/v1/models/doubler:predict", json={"instances": [[1, 2, 3]]})
    client.post("/v1/models/doubler:predict", json={"instances": [[1, 2, 3]]})
    client.post("/v1/models/doubler:predict", json={"instances": "nope"})
    client.post("/v1/models/ghost:predict", json={"instances": [1]})
    text = client.get("/metrics").text
    assert 'modelyard_requests_total{code="200",model="doubler",protocol="v1"} 2.0' in text
    assert 'modelyard_requests_total{code="400",model="doubler",protocol="v1"} 1.0' in text
    # An unknown model's name never becomes a label value.
    assert 'modelyard_requests_total{code="404",model="",protocol="v1"} 1.0' in text
    assert "ghost" not in text
