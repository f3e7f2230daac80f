"""Open Inference Protocol (KServe V2) REST: every endpoint, every error, through the real app.

In-process (Starlette TestClient); the app's lifespan runs, so models genuinely load and warm up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard import TensorSpec
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN

JSON = "application/json"


# -- extra models --------------------------------------------------------------------------------


@modelyard.model(
    name="pair",
    inputs=[TensorSpec("a", "FP32", [-1]), TensorSpec("b", "FP32", [-1])],
    outputs=[TensorSpec("sum", "FP32", [-1]), TensorSpec("diff", "FP32", [-1])],
)
class Pair:
    """Two inputs, two outputs: for missing inputs and output selection."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"sum": inputs["a"] + inputs["b"], "diff": inputs["a"] - inputs["b"]}


@modelyard.model(name="fixed", inputs=[TensorSpec("x", "FP32", [3])], outputs=[TensorSpec("y", "FP32", [3])])
class Fixed:
    """Declares stacked batching but has no batch dimension: the server serves it unbatched."""

    @modelyard.batch(max_batch_size=8, max_latency_ms=1, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 1}


# -- helpers -------------------------------------------------------------------------------------


def x_input(data: Any, shape: list[int], datatype: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def doubler_body(rows: int = 1) -> dict[str, Any]:
    data = list(range(rows * 3))
    return {"inputs": [x_input(data, [rows, 3])]}


def assert_error(response: Any, status: int, kind: str, field: str | None = None) -> dict[str, Any]:
    """Every error: the status, JSON content type, and the body {"error", "kind", "field"?}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(JSON)
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["kind"] == kind
    if field is not None:
        assert body["field"] == field
    return body


@pytest.fixture
def app_client() -> Iterator[TestClient]:
    """The shared test models plus the extra ones of this file."""
    app = build_app(
        Settings(),
        [models.Doubler, models.Picky, models.Lister, models.Slow, models.AsyncEcho, Pair, Fixed],
    )
    with TestClient(app) as test_client:
        yield test_client


# -- server metadata and health ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata_with_and_without_trailing_slash(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 200  # exactly 200: tritonclient follows no redirect
    assert response.headers["content-type"].startswith(JSON)
    doc = response.json()
    assert doc["name"] == "modelyard"
    assert doc["version"] == modelyard.__version__
    assert {"binary_tensor_data", "model_configuration", "model_repository"} <= set(doc["extensions"])
    assert all(isinstance(e, str) for e in doc["extensions"])


def test_health_live_and_ready(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    assert live.status_code == 200
    assert live.json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


# -- model metadata, ready, config ---------------------------------------------------------------


def test_model_metadata(client: TestClient) -> None:
    response = client.get("/v2/models/doubler")
    assert response.status_code == 200
    doc = response.json()
    assert doc["name"] == "doubler"
    assert doc["versions"] == ["1"]
    assert doc["platform"] == "modelyard_python"
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["parameters"]["labels"] == {"team": "tests"}
    assert client.get("/v2/models/doubler/versions/1").json() == doc


def test_versions_are_strings_and_routed() -> None:
    app = build_app(Settings(), [models.Doubler, models.Doubler.replace(version="2")])
    with TestClient(app) as c:
        doc = c.get("/v2/models/doubler").json()
        assert doc["versions"] == ["1", "2"]
        assert c.get("/v2/models/doubler/versions/2").status_code == 200
        latest = c.post("/v2/models/doubler/infer", json=doubler_body())
        assert latest.json()["model_version"] == "2"  # no version: the highest wins
        pinned = c.post("/v2/models/doubler/versions/1/infer", json=doubler_body())
        assert pinned.status_code == 200
        assert pinned.json()["model_version"] == "1"
        assert c.get("/v2/models/doubler/versions/1/ready").status_code == 200
        assert_error(c.get("/v2/models/doubler/versions/3"), 404, "not_found", "model")


def test_model_ready(client: TestClient) -> None:
    response = client.get("/v2/models/doubler/ready")
    assert response.status_code == 200
    assert response.json() == {"name": "doubler", "ready": True}
    assert client.get("/v2/models/doubler/versions/1/ready").status_code == 200
    body = assert_error(client.get("/v2/models/nope/ready"), 404, "not_found", "model")
    assert "nope" in body["error"]


def test_model_config_uses_triton_vocabulary(client: TestClient) -> None:
    response = client.get("/v2/models/doubler/config")
    assert response.status_code == 200
    config = response.json()
    assert config["name"] == "doubler"
    assert config["max_batch_size"] == 16
    # singular keys, TYPE_* datatypes, dims without the batch dimension
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]
    assert config["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [3]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20_000
    assert config["platform"] == "modelyard_python"
    assert isinstance(config["backend"], str)
    assert config["backend"]
    assert client.get("/v2/models/doubler/versions/1/config").json() == config
    assert_error(client.get("/v2/models/nope/config"), 404, "not_found", "model")


def test_model_config_unbatched_models(app_client: TestClient) -> None:
    lister = app_client.get("/v2/models/lister/config").json()
    assert lister["max_batch_size"] == 0  # list batching does not split a request's rows
    fixed = app_client.get("/v2/models/fixed/config").json()
    assert fixed["max_batch_size"] == 0  # no batch dimension: dims are the whole shape
    assert fixed["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]
    served = app_client.post("/v2/models/fixed/infer", json={"inputs": [x_input([1, 2, 3], [3])]})
    assert served.status_code == 200
    assert served.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0]


# -- inference -----------------------------------------------------------------------------------


def test_infer_flat_and_nested_data_agree(client: TestClient) -> None:
    flat = client.post("/v2/models/doubler/infer", json={"inputs": [x_input([1, 2, 3, 4, 5, 6], [2, 3])]})
    nested = client.post(
        "/v2/models/doubler/infer", json={"inputs": [x_input([[1, 2, 3], [4, 5, 6]], [2, 3])]}
    )
    assert flat.status_code == nested.status_code == 200
    assert flat.headers["content-type"].startswith(JSON)
    assert "inference-header-content-length" not in flat.headers
    assert flat.json() == nested.json()
    out = flat.json()["outputs"][0]
    assert out == {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [2, 4, 6, 8, 10, 12]}
    assert flat.json()["model_name"] == "doubler"
    assert flat.json()["model_version"] == "1"


def test_infer_echoes_id_and_tolerates_extra_keys(client: TestClient) -> None:
    body = {
        "id": "req-42",
        "model_name": "ignored",  # Triton's examples put it in the body
        "parameters": {"content_type": "np", "custom": 1},  # unknown parameters are ignored
        "inputs": [{**x_input([1, 2, 3], [1, 3]), "parameters": {"content_type": "np"}}],
    }
    response = client.post("/v2/models/doubler/infer", json=body)
    assert response.status_code == 200
    assert response.json()["id"] == "req-42"
    without = client.post("/v2/models/doubler/infer", json=doubler_body())
    assert "id" not in without.json()


def test_infer_without_content_type(client: TestClient) -> None:
    # tritonclient sends no Content-Type at all
    raw = b'{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'
    response = client.post("/v2/models/doubler/infer", content=raw, headers={"content-type": ""})
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [2, 4, 6]


def test_infer_all_outputs_and_requested_subset(app_client: TestClient) -> None:
    inputs = [x_input([5, 7], [2], name="a"), x_input([1, 2], [2], name="b")]
    everything = app_client.post("/v2/models/pair/infer", json={"inputs": inputs}).json()
    assert [o["name"] for o in everything["outputs"]] == ["sum", "diff"]
    subset = app_client.post(
        "/v2/models/pair/infer", json={"inputs": inputs, "outputs": [{"name": "diff"}]}
    ).json()
    assert subset["outputs"] == [{"name": "diff", "datatype": "FP32", "shape": [2], "data": [4, 5]}]


def test_unknown_output_is_400_naming_it(app_client: TestClient) -> None:
    inputs = [x_input([5], [1], name="a"), x_input([1], [1], name="b")]
    response = app_client.post(
        "/v2/models/pair/infer", json={"inputs": inputs, "outputs": [{"name": "product"}]}
    )
    body = assert_error(response, 400, "invalid_input", "product")
    assert "product" in body["error"]
    # a model without declared outputs: the name is checked against what it returned
    echo = app_client.post(
        "/v2/models/async_echo/infer",
        json={"inputs": [x_input([1], [1])], "outputs": [{"name": "nothing"}]},
    )
    assert "nothing" in assert_error(echo, 400, "invalid_input", "nothing")["error"]


def test_classification_is_refused_not_ignored(client: TestClient) -> None:
    body = {**doubler_body(), "outputs": [{"name": "y", "parameters": {"classification": 2}}]}
    response = client.post("/v2/models/doubler/infer", json=body)
    assert "classification" in assert_error(response, 400, "invalid_input")["error"]


# -- request errors ------------------------------------------------------------------------------

ERROR_CASES: list[tuple[str, str, Any, str]] = [
    # (case id, model, body, field)
    ("malformed-json", "doubler", b'{"inputs": [', "body"),
    ("empty-body", "doubler", b"", "body"),
    ("not-an-object", "doubler", b"[1, 2, 3]", "body"),
    ("missing-inputs", "doubler", {"id": "1"}, "inputs"),
    ("inputs-not-a-list", "doubler", {"inputs": {"x": [1, 2, 3]}}, "inputs"),
    ("input-not-an-object", "doubler", {"inputs": [7]}, "inputs[0]"),
    ("missing-input", "pair", {"inputs": [x_input([1], [1], name="a")]}, "b"),
    ("unknown-input", "doubler", {"inputs": [x_input([1, 2, 3], [1, 3], name="z")]}, "z"),
    ("duplicate-input", "doubler", {"inputs": [x_input([1, 2, 3], [1, 3])] * 2}, "inputs[1].name"),
    ("wrong-datatype", "doubler", {"inputs": [x_input([1, 2, 3], [1, 3], "INT32")]}, "x.datatype"),
    ("unknown-datatype", "doubler", {"inputs": [x_input([1, 2, 3], [1, 3], "FLOAT")]}, "inputs[0].datatype"),
    (
        "lower-case-datatype",
        "doubler",
        {"inputs": [x_input([1, 2, 3], [1, 3], "fp32")]},
        "inputs[0].datatype",
    ),
    ("wrong-shape", "doubler", {"inputs": [x_input([1, 2], [1, 2])]}, "x.shape"),
    ("negative-dim", "doubler", {"inputs": [x_input([1, 2, 3], [-1, 3])]}, "inputs[0].shape"),
    ("shape-not-ints", "doubler", {"inputs": [x_input([1, 2, 3], ["1", 3])]}, "inputs[0].shape"),
    ("too-many-dims", "async_echo", {"inputs": [x_input([1], [1] * 70)]}, "inputs[0].shape"),
    ("count-not-shape", "doubler", {"inputs": [x_input([1, 2, 3], [2, 3])]}, "inputs[0].data"),
    ("ragged-data", "doubler", {"inputs": [x_input([[1, 2, 3], [4]], [2, 3])]}, "inputs[0].data"),
    ("strings-in-fp32", "doubler", {"inputs": [x_input(["1", "2", "3"], [1, 3])]}, "inputs[0].data"),
    ("null-in-fp32", "doubler", {"inputs": [x_input([1, None, 3], [1, 3])]}, "inputs[0].data"),
    ("object-as-data", "doubler", {"inputs": [x_input({"a": 1}, [1, 3])]}, "inputs[0].data"),
    ("fraction-in-int32", "async_echo", {"inputs": [x_input([1.5], [1], "INT32")]}, "inputs[0].data"),
    ("overflow-uint8", "async_echo", {"inputs": [x_input([256], [1], "UINT8")]}, "inputs[0].data"),
    ("overflow-fp16", "async_echo", {"inputs": [x_input([1e300], [1], "FP16")]}, "inputs[0].data"),
    ("string-in-bool", "async_echo", {"inputs": [x_input(["yes"], [1], "BOOL")]}, "inputs[0].data"),
    ("number-in-bytes", "async_echo", {"inputs": [x_input([1], [1], "BYTES")]}, "inputs[0].data"),
    (
        "no-data",
        "doubler",
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]},
        "inputs[0].data",
    ),
    ("id-not-a-string", "doubler", {**doubler_body(), "id": 7}, "id"),
    ("parameters-not-object", "doubler", {**doubler_body(), "parameters": [1]}, "parameters"),
    ("outputs-not-a-list", "doubler", {**doubler_body(), "outputs": "y"}, "outputs"),
    (
        "timeout-not-int",
        "doubler",
        {**doubler_body(), "parameters": {"timeout": "soon"}},
        "parameters.timeout",
    ),
]


@pytest.mark.parametrize(
    ("model", "body", "field"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_request_is_400_naming_the_field(
    app_client: TestClient, model: str, body: Any, field: str
) -> None:
    if isinstance(body, bytes):
        response = app_client.post(f"/v2/models/{model}/infer", content=body)
    else:
        response = app_client.post(f"/v2/models/{model}/infer", json=body)
    assert_error(response, 400, "invalid_input", field)


def test_unknown_model_and_version_are_404(client: TestClient) -> None:
    body = assert_error(client.post("/v2/models/nope/infer", json=doubler_body()), 404, "not_found", "model")
    assert "nope" in body["error"]
    body = assert_error(
        client.post("/v2/models/doubler/versions/9/infer", json=doubler_body()), 404, "not_found", "model"
    )
    assert "'9'" in body["error"]
    assert_error(client.get("/v2/models/nope"), 404, "not_found", "model")
    assert_error(client.get("/v2/models/doubler/versions/9"), 404, "not_found", "model")


def test_oversized_body_is_413() -> None:
    app = build_app(Settings(max_body_bytes=1024), [models.Doubler])
    with TestClient(app) as c:
        rows = 200  # ~3.6 kB of JSON
        response = c.post("/v2/models/doubler/infer", json=doubler_body(rows))
        assert_error(response, 413, "too_large", "body")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds while streaming
            yield b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3'
            for _ in range(200):
                yield b", 0, 0, 0, 0, 0, 0, 0, 0"
            yield b"]}]}"

        assert_error(c.post("/v2/models/doubler/infer", content=chunks()), 413, "too_large", "body")
        assert c.post("/v2/models/doubler/infer", json=doubler_body()).status_code == 200


def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing/here"), 404, "not_found", "path")
    assert_error(client.post("/v3/models/doubler/infer", json={}), 404, "not_found", "path")
    response = client.get("/v2/models/doubler/infer")
    assert_error(response, 405, "method_not_allowed", "method")
    assert "POST" in response.headers["allow"]
    assert_error(client.delete("/v2/models/doubler"), 405, "method_not_allowed")
    assert_error(client.post("/v2/health/live"), 405, "method_not_allowed")


# -- model failures, isolation, overload, deadlines ---------------------------------------------


def test_model_error_is_500_and_the_server_keeps_serving(client: TestClient) -> None:
    bad = client.post("/v2/models/picky/infer", json={"inputs": [x_input([-1], [1, 1])]})
    body = assert_error(bad, 500, "model_error")
    assert "negative values are not allowed" in body["error"]
    good = client.post("/v2/models/picky/infer", json={"inputs": [x_input([2], [1, 1])]})
    assert good.status_code == 200
    assert good.json()["outputs"][0]["data"] == [3]
    assert client.get("/v2/health/ready").status_code == 200


def _batch_rows(client: TestClient, model: str) -> tuple[float, float]:
    """(sum, count) of the model's batch-size histogram."""
    text = client.get("/metrics").text
    values = {}
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(f'modelyard_batch_size{suffix}{{model="{model}"}}'):
                values[suffix] = float(line.rsplit(" ", 1)[1])
    return values.get("_sum", 0.0), values.get("_count", 0.0)


def test_one_bad_item_in_a_batch_fails_alone(client: TestClient) -> None:
    values = [1, 2, 3, -4, 5, 6]
    barrier = threading.Barrier(len(values))

    def call(v: int) -> Any:
        barrier.wait()
        return client.post("/v2/models/picky/infer", json={"inputs": [x_input([v], [1, 1])]})

    with ThreadPoolExecutor(len(values)) as pool:
        responses = list(pool.map(call, values))
    for v, response in zip(values, responses, strict=True):
        if v < 0:
            assert "negative values are not allowed" in assert_error(response, 500, "model_error")["error"]
        else:
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [v + 1]
    rows, batches = _batch_rows(client, "picky")
    assert rows > batches  # some batch really held several requests (and was split on failure)


def test_full_queue_is_503_with_retry_after() -> None:
    app = build_app(Settings(max_queue=1, workers_per_model=1), [models.Slow])
    body = {"inputs": [x_input([0.3], [1], name="seconds")]}
    with TestClient(app) as c, ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: c.post("/v2/models/slow/infer", json=body), range(5)))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes
        overloaded = [r for r in responses if r.status_code == 503]
        assert overloaded, codes
        for response in overloaded:
            assert_error(response, 503, "overloaded")
            assert int(response.headers["retry-after"]) >= 1
        assert set(codes) <= {200, 503}
        assert c.get("/v2/health/live").status_code == 200


def test_request_timeout_parameter_is_504(client: TestClient) -> None:
    body = {
        "inputs": [x_input([1.0], [1], name="seconds")],
        "parameters": {"timeout": 50_000},  # microseconds, Triton's reserved parameter
    }
    started = time.monotonic()
    response = client.post("/v2/models/slow/infer", json=body)
    elapsed = time.monotonic() - started
    assert_error(response, 504, "deadline_exceeded")
    assert elapsed < 0.9  # answered at the deadline, not when the model finished
    fast = {"inputs": [x_input([0.0], [1], name="seconds")], "parameters": {"timeout": 5_000_000}}
    assert client.post("/v2/models/slow/infer", json=fast).status_code == 200


def test_unwell_model_never_becomes_ready() -> None:
    app = build_app(Settings(), [models.Doubler, models.Unwell])
    with TestClient(app) as c:
        assert c.get("/v2/health/live").status_code == 200
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False}
        model_ready = c.get("/v2/models/unwell/ready")
        assert model_ready.status_code == 503
        assert model_ready.json() == {"name": "unwell", "ready": False}
        infer = c.post("/v2/models/unwell/infer", json={"inputs": [x_input([1], [1])]})
        assert_error(infer, 503, "not_ready", "model")
        index = {row["name"]: row for row in c.post("/v2/repository/index").json()}
        assert index["unwell"]["state"] == "FAILED"
        assert "weights are corrupt" in index["unwell"]["reason"]
        assert index["doubler"]["state"] == "READY"
        # the healthy model is unaffected
        assert c.post("/v2/models/doubler/infer", json=doubler_body()).status_code == 200


# -- model repository extension ------------------------------------------------------------------


def test_repository_index(client: TestClient) -> None:
    response = client.post("/v2/repository/index")  # tritonclient sends an empty body
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list)
    assert {r["name"] for r in rows} == {"doubler", "picky", "lister", "slow", "async_echo"}
    for row in rows:
        assert row["version"] == "1"
        assert row["state"] == "READY"
        assert isinstance(row["reason"], str)
    assert client.post("/v2/repository/index", json={"ready": True}).json() == rows
    assert client.post("/v2/repository/index", json={"ready": False}).json() == []
    assert_error(client.post("/v2/repository/index", content=b"{nope"), 400, "invalid_input", "body")


@pytest.fixture
def control_client() -> Iterator[TestClient]:
    """A server with model control on, every request carrying its token."""
    settings = Settings(model_control=True, model_control_token=CONTROL_TOKEN)
    with TestClient(build_app(settings, [models.Doubler]), headers=CONTROL_HEADERS) as test_client:
        yield test_client


def test_repository_unload_then_load(control_client: TestClient) -> None:
    client = control_client
    unload = client.post(
        "/v2/repository/models/doubler/unload", json={"parameters": {"unload_dependents": False}}
    )
    assert unload.status_code == 200
    assert client.get("/v2/models/doubler/ready").status_code == 503
    assert client.get("/v2/health/ready").status_code == 503
    assert_error(client.post("/v2/models/doubler/infer", json=doubler_body()), 503, "not_ready")
    states = {r["name"]: r["state"] for r in client.post("/v2/repository/index").json()}
    assert states["doubler"] == "UNLOADED"
    assert client.post("/v2/repository/index", json={"ready": False}).json()[0]["name"] == "doubler"

    load = client.post("/v2/repository/models/doubler/load", content=b"")
    assert load.status_code == 200
    assert client.get("/v2/models/doubler/ready").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    response = client.post("/v2/models/doubler/infer", json=doubler_body())
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [0, 2, 4]
    # loading a model that is already loaded is fine
    assert client.post("/v2/repository/models/doubler/load", json={}).status_code == 200


def test_repository_errors(control_client: TestClient) -> None:
    client = control_client
    assert_error(client.post("/v2/repository/models/nope/load"), 404, "not_found", "model")
    assert_error(client.post("/v2/repository/models/nope/unload"), 404, "not_found", "model")
    assert_error(client.post("/v2/repository/models/doubler/explode"), 400, "invalid_input", "action")
    assert_error(client.post("/v2/repository/models/doubler/load", content=b"[1]"), 400, "invalid_input")
    assert_error(client.get("/v2/repository/index"), 405, "method_not_allowed")
