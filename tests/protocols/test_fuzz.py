"""Property tests: whatever a client sends, the server answers with a deliberate status and a JSON
error body, and keeps serving.

Allowed 5xx answers are deliberate ones only: 500 ``model_error`` (the model's own code raised),
501 ``unsupported``, 503 ``overloaded`` / ``not_ready`` and 504 ``deadline_exceeded``. A 500
``internal`` is a bug in the server: some input reached code that did not expect it.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from modelyard import BatchSpec
from modelyard.dtypes import DATATYPES, itemsize
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN

ALLOWED_5XX = {
    (500, "model_error"),
    (501, "unsupported"),
    (503, "overloaded"),
    (503, "not_ready"),
    (504, "deadline_exceeded"),
}
INFER_MODELS = ["doubler", "lister", "async_echo", "picky"]
HEADER = "Inference-Header-Content-Length"


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a property: no per-example deadline (the server is real), ``examples`` runs."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One server for the whole module. Batching latency is cut to 1 ms to keep examples fast."""
    fast = BatchSpec(16, 1.0, stack=True)
    specs = [
        models.Doubler.replace(batching=fast),
        models.Picky.replace(batching=fast),
        models.Lister.replace(batching=BatchSpec(4, 1.0)),
        models.AsyncEcho,
    ]
    # raise_server_exceptions=False: an exception escaping the app must show up as a bad answer
    settings = Settings(max_body_bytes=1 << 20, model_control=True, model_control_token=CONTROL_TOKEN)
    with TestClient(build_app(settings, specs), raise_server_exceptions=False, headers=CONTROL_HEADERS) as c:
        yield c


def check(response: Any, context: object = "") -> None:
    """The invariants every answer must satisfy."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{response.request.method} {response.request.url.path} -> {status}: {response.content[:300]!r}"
    assert response.headers.get("content-type", "").startswith("application/json"), where
    try:
        body = response.json()
    except ValueError:
        pytest.fail(f"non-JSON error body: {where} (sent {context!r:.300})")
    assert isinstance(body, dict), where
    assert isinstance(body.get("error"), str), where
    if status >= 500:
        assert (status, body.get("kind")) in ALLOWED_5XX, f"{where} (sent {context!r:.300})"


def still_alive(client: TestClient) -> None:
    response = client.get("/v2/health/live")
    assert response.status_code == 200
    assert response.json() == {"live": True}


# -- strategies ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
length_values = st.integers(min_value=0, max_value=4096).map(str) | header_text
encodings = st.sampled_from(["gzip", "deflate", "identity", "GZIP", "br", "", "gzip, deflate"]) | header_text


@st.composite
def random_headers(draw: st.DrawFn) -> dict[str, str]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers[HEADER] = draw(length_values)
    if draw(st.booleans()):
        headers["Content-Encoding"] = draw(encodings)
    if draw(st.booleans()):
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/octet-stream", "text/plain"])
        )
    return headers


def compress_maybe(body: bytes, how: str) -> tuple[bytes, dict[str, str]]:
    if how == "gzip":
        return gzip.compress(body), {"Content-Encoding": "gzip"}
    if how == "deflate":
        return zlib.compress(body), {"Content-Encoding": "deflate"}
    return body, {}


# -- near-valid OIP requests ---------------------------------------------------------------------

names = st.sampled_from(["x", "a", "b", "s", "seconds", "total", "y", ""]) | st.text(max_size=4)
datatypes = st.sampled_from(sorted(DATATYPES)) | st.sampled_from(["fp32", "STRING", "FLOAT", "", "INT128"])
dims = (
    st.integers(min_value=0, max_value=4)
    | st.sampled_from([-1, 2**31, 2**40])
    | st.sampled_from([True, 1.5, "2"])
)
shapes = st.lists(dims, max_size=4) | st.sampled_from([None, "2,3", {}, [1] * 40])


def element(datatype: str) -> st.SearchStrategy[Any]:
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=6)
    if datatype.startswith(("INT", "UINT")):
        return st.integers(min_value=-300, max_value=70000)
    return st.floats(allow_nan=False, allow_infinity=False, width=32)


def nest(flat: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return flat
    step = math.prod(shape[1:])
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])] if step else flat


def encode_binary(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        raw = [str(v).encode() for v in values]  # values may be numbers: junk for a BYTES tensor
        return b"".join(struct.pack("<I", len(r)) + r for r in raw)
    width = itemsize(datatype) or 4
    return bytes(width * len(values))


@st.composite
def tensor(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """One input entry, sometimes well-formed, often subtly wrong; plus its binary chunk, if any."""
    datatype = draw(datatypes)
    shape = draw(shapes)
    entry: dict[str, Any] = {"name": draw(names), "datatype": datatype, "shape": shape}
    valid_shape = isinstance(shape, list) and all(type(d) is int and 0 <= d <= 4 for d in shape)
    count = math.prod(shape) if valid_shape else draw(st.integers(0, 6))
    values = draw(
        st.lists(element(datatype if datatype in DATATYPES else "FP32"), min_size=count, max_size=count)
    )
    if draw(st.integers(0, 9)) == 0:  # wrong element count
        values = values + values[:1] if values else [0]
    mode = draw(st.sampled_from(["flat", "nested", "binary", "binary-bad-size", "junk", "missing"]))
    chunk = b""
    if mode == "flat":
        entry["data"] = values
    elif mode == "nested" and valid_shape:
        entry["data"] = nest(values, list(shape))
    elif mode.startswith("binary"):
        chunk = encode_binary(datatype if datatype in DATATYPES else "FP32", values)
        size = len(chunk) if mode == "binary" else draw(st.integers(-2, len(chunk) + 9))
        entry["parameters"] = {"binary_data_size": size}
        if size >= 0:
            chunk = (chunk + bytes(max(0, size - len(chunk))))[:size]
    elif mode == "junk":
        entry["data"] = draw(json_values)
    if draw(st.integers(0, 7)) == 0:
        entry["parameters"] = draw(json_values)
    return entry, chunk


@st.composite
def oip_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    tensors = draw(st.lists(tensor(), max_size=3))
    doc: dict[str, Any] = {"inputs": [entry for entry, _ in tensors]}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=5) | st.integers())
    if draw(st.booleans()):
        doc["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": names},
                    optional={
                        "parameters": st.fixed_dictionaries(
                            {},
                            optional={
                                "binary_data": st.booleans() | json_scalars,
                                "classification": st.integers(0, 3),
                            },
                        )
                    },
                ),
                max_size=3,
            )
            | json_values
        )
    if draw(st.booleans()):
        doc["parameters"] = draw(
            st.fixed_dictionaries({}, optional={
                "binary_data_output": st.booleans() | json_scalars,
                "timeout": st.integers(-5, 5_000_000) | json_scalars,
                "content_type": st.text(max_size=4),
            })
            | json_values
        )  # fmt: skip
    if draw(st.integers(0, 9)) == 0:
        del doc["inputs"]
    head = json.dumps(doc).encode()
    binary = b"".join(chunk for _, chunk in tensors)
    headers: dict[str, str] = {}
    if binary or draw(st.integers(0, 5)) == 0:
        headers[HEADER] = str(len(head) + draw(st.sampled_from([0, 0, 0, -1, 1, 10**6])))
    if draw(st.integers(0, 9)) == 0:
        binary += draw(st.binary(max_size=8))
    body, encoding = compress_maybe(head + binary, draw(st.sampled_from(["none", "none", "gzip", "deflate"])))
    return body, {**headers, **encoding}


# -- properties ----------------------------------------------------------------------------------


@fuzz(400)
@given(model=st.sampled_from(INFER_MODELS), request=oip_request())
def test_near_valid_infer_requests(
    client: TestClient, model: str, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    check(client.post(f"/v2/models/{model}/infer", content=body, headers=headers), request)


@fuzz(150)
@given(model=st.sampled_from(INFER_MODELS), doc=json_values, how=st.sampled_from(["none", "gzip", "deflate"]))
def test_arbitrary_json_to_infer(client: TestClient, model: str, doc: Any, how: str) -> None:
    body, headers = compress_maybe(json.dumps(doc).encode(), how)
    check(client.post(f"/v2/models/{model}/infer", content=body, headers=headers), doc)


@fuzz(150)
@given(model=st.sampled_from(INFER_MODELS), body=st.binary(max_size=300), headers=random_headers())
def test_arbitrary_bytes_and_headers_to_infer(
    client: TestClient, model: str, body: bytes, headers: dict[str, str]
) -> None:
    check(client.post(f"/v2/models/{model}/infer", content=body, headers=headers), (body, headers))


@fuzz(150)
@given(inputs=json_values, wrap=st.sampled_from(["instances", "inputs", "none"]), headers=random_headers())
def test_tfserving_predict(client: TestClient, inputs: Any, wrap: str, headers: dict[str, str]) -> None:
    headers.pop(HEADER, None)
    headers.pop("Content-Encoding", None)
    doc = inputs if wrap == "none" else {wrap: inputs}
    check(client.post("/v1/models/doubler:predict", content=json.dumps(doc).encode(), headers=headers), doc)


suffixes = st.sampled_from(
    ["", "/ready", "/config", "/infer", "/versions/1", "/versions/1/ready", "/versions/1/config",
     "/versions/1/infer", "/stats", "/versions//infer", ":predict", "/metadata"]
)  # fmt: skip
path_names = st.sampled_from([*INFER_MODELS, "slow", "unwell", ""]) | st.text(min_size=1, max_size=10)


@fuzz(250)
@given(
    prefix=st.sampled_from(["/v2/models/", "/v1/models/", "/v2/", "/v2/repository/models/", "/"]),
    name=path_names,
    suffix=suffixes | st.text(max_size=10).map(lambda s: "/" + quote(s, safe="")),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    body=st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_random_paths_and_methods(
    client: TestClient, prefix: str, name: str, suffix: str, method: str, body: bytes
) -> None:
    if prefix == "/v2/repository/models/" and method == "POST" and name in INFER_MODELS:
        name = "x" + name  # unloading real models would turn later examples into 503s
    path = prefix + quote(name, safe="") + suffix
    content = body if method in ("POST", "PUT", "PATCH") else None
    check(client.request(method, path, content=content), path)


@fuzz(100)
@given(
    body=st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()), headers=random_headers()
)
def test_repository_index(client: TestClient, body: bytes, headers: dict[str, str]) -> None:
    response = client.post("/v2/repository/index", content=body, headers=headers)
    check(response, body)
    if response.status_code == 200:
        assert isinstance(response.json(), list)


@fuzz(60)
@given(
    action=st.sampled_from(["load", "unload"]),
    body=st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_repository_load_unload_then_serve(client: TestClient, action: str, body: bytes) -> None:
    check(client.post(f"/v2/repository/models/lister/{action}", content=body), body)
    load = client.post("/v2/repository/models/lister/load")  # always leave it loaded
    assert load.status_code == 200, load.text
    response = client.post(
        "/v2/models/lister/infer",
        json={"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [30.0]


@pytest.mark.parametrize(
    "path", ["/v2", "/v2/", "/v2/health/ready", "/v2/models/doubler", "/v2/models/doubler/ready",
             "/v2/models/doubler/config", "/metrics", "/health/ready"]
)  # fmt: skip
@fuzz(15)
@given(headers=random_headers(), query=st.text(max_size=10))
def test_get_endpoints_ignore_junk(
    client: TestClient, path: str, headers: dict[str, str], query: str
) -> None:
    response = client.get(path + "?" + quote(query, safe="=&"), headers=headers)
    check(response, headers)
    assert response.status_code == 200, response.text


def test_server_still_serves_after_fuzzing(client: TestClient) -> None:
    still_alive(client)
    assert client.get("/v2/health/ready").status_code == 200
    response = client.post(
        "/v2/models/doubler/infer",
        json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [2, 4, 6]
