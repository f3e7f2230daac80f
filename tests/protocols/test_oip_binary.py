"""The binary tensor data extension, by hand: raw bodies and headers as tritonclient would send them.

Body = JSON header + binary chunks (in ``inputs`` order); ``Inference-Header-Content-Length`` is the
byte length of the JSON, measured before any Content-Encoding is applied.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models

HEADER = "Inference-Header-Content-Length"


# -- helpers -------------------------------------------------------------------------------------


def binary_request(
    inputs: list[tuple[str, str, np.ndarray | list[bytes], bool]], **extra: Any
) -> tuple[bytes, dict[str, str]]:
    """Build a request body; each input is (name, datatype, value, as_binary)."""
    doc_inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, datatype, value, as_binary in inputs:
        if datatype == "BYTES":
            items = list(value)
            shape = [len(items)]
            raw = encode_bytes(items)
            json_data: Any = [v.decode() for v in items] if not as_binary else None
        else:
            array = np.asarray(value)
            shape = list(array.shape)
            raw = bf16(array) if datatype == "BF16" else array.astype(array.dtype.newbyteorder("<")).tobytes()
            json_data = array.ravel().tolist()
        entry: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        if as_binary:
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_data
        doc_inputs.append(entry)
    head = json.dumps({"inputs": doc_inputs, **extra}).encode()
    return head + b"".join(chunks), {HEADER: str(len(head))}


def encode_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in items)


def decode_bytes(raw: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def bf16(array: np.ndarray) -> bytes:
    """tritonclient's BF16 encoding: the high 16 bits of each float32."""
    words = np.asarray(array, dtype="<f4").view("<u4") >> 16
    return words.astype("<u2").tobytes()


def split_response(response: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Parse a (possibly binary) OIP response into its JSON and each binary output's bytes."""
    body = response.content
    length = response.headers.get(HEADER)
    head = body if length is None else body[: int(length)]
    doc: dict[str, Any] = json.loads(head)
    binary, pos = {}, len(head)
    for out in doc["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if size is not None:
            binary[out["name"]] = body[pos : pos + size]
            pos += size
    assert pos == len(body), "the binary section must hold exactly the announced bytes"
    return doc, binary


def assert_error(response: Any, status: int, kind: str, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["kind"] == kind
    if field is not None:
        assert body["field"] == field
    message: str = body["error"]
    return message


X = np.arange(6, dtype=np.float32).reshape(2, 3) - 1.5


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = build_app(Settings(max_body_bytes=1 << 20), [models.Doubler, models.AsyncEcho])
    with TestClient(app) as test_client:
        yield test_client


# -- inputs --------------------------------------------------------------------------------------


def test_fp32_binary_input_json_output(client: TestClient) -> None:
    body, headers = binary_request([("x", "FP32", X, True)])
    response = client.post("/v2/models/doubler/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert HEADER.lower() not in response.headers  # no binary output asked for: plain JSON
    assert response.headers["content-type"].startswith("application/json")
    out = response.json()["outputs"][0]
    assert out["shape"] == [2, 3]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(2, 3), X * 2)


def test_header_name_is_case_insensitive(client: TestClient) -> None:
    body, headers = binary_request([("x", "FP32", X, True)])
    response = client.post(
        "/v2/models/doubler/infer",
        content=body,
        headers={
            "INFERENCE-HEADER-CONTENT-LENGTH": headers[HEADER],
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text


def test_json_and_binary_inputs_mixed(client: TestClient) -> None:
    a = np.array([1, 2, 3], dtype=np.int32)
    b = np.array([[True, False]], dtype=np.bool_)
    c = np.array([0.5, -0.25], dtype=np.float64)
    body, headers = binary_request(
        [("a", "INT32", a, True), ("b", "BOOL", b, False), ("c", "FP64", c, True)],
        parameters={"binary_data_output": True},
    )
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    doc, binary = split_response(response)
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("a", "INT32", [3]),
        ("b", "BOOL", [1, 2]),
        ("c", "FP64", [2]),
    ]
    np.testing.assert_array_equal(np.frombuffer(binary["a"], "<i4"), a)
    np.testing.assert_array_equal(np.frombuffer(binary["b"], np.bool_).reshape(1, 2), b)
    np.testing.assert_array_equal(np.frombuffer(binary["c"], "<f8"), c)


# -- outputs -------------------------------------------------------------------------------------


def test_binary_output_for_all_outputs(client: TestClient) -> None:
    body, headers = binary_request([("x", "FP32", X, True)], parameters={"binary_data_output": True})
    response = client.post("/v2/models/doubler/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    doc, binary = split_response(response)
    assert length == len(json.dumps(doc, separators=(",", ":")).encode())  # bytes of the JSON part
    out = doc["outputs"][0]
    assert "data" not in out
    assert out["parameters"]["binary_data_size"] == 24
    np.testing.assert_array_equal(np.frombuffer(binary["y"], "<f4").reshape(out["shape"]), X * 2)


def test_per_output_binary_data_overrides_request_default(client: TestClient) -> None:
    a, b = np.array([1.0, 2.0], np.float32), np.array([3, 4], np.int64)
    outputs = [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a", "parameters": {}}]
    body, headers = binary_request([("a", "FP32", a, False), ("b", "INT64", b, False)], outputs=outputs)
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    doc, binary = split_response(response)
    assert [o["name"] for o in doc["outputs"]] == ["b", "a"]
    assert doc["outputs"][1]["data"] == [1.0, 2.0]  # no flag anywhere: JSON
    np.testing.assert_array_equal(np.frombuffer(binary["b"], "<i8"), b)

    # request default true, one output opting out
    outputs = [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}]
    body, headers = binary_request(
        [("a", "FP32", a, True), ("b", "INT64", b, True)],
        outputs=outputs,
        parameters={"binary_data_output": True},
    )
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    doc, binary = split_response(response)
    assert doc["outputs"][0]["data"] == [1.0, 2.0]
    assert set(binary) == {"b"}
    np.testing.assert_array_equal(np.frombuffer(binary["b"], "<i8"), b)


def test_no_binary_output_means_no_header(client: TestClient) -> None:
    outputs = [{"name": "y", "parameters": {"binary_data": False}}]
    body, headers = binary_request([("x", "FP32", X, True)], outputs=outputs)
    response = client.post("/v2/models/doubler/infer", content=body, headers=headers)
    assert response.status_code == 200
    assert HEADER.lower() not in response.headers
    assert response.json()["outputs"][0]["data"] == (X * 2).ravel().tolist()


# -- BYTES and BF16 ------------------------------------------------------------------------------

WORDS = [b"hello", b"", b"\x00\xff binary", "héllo".encode()]


def test_bytes_length_prefixed_in_and_out(client: TestClient) -> None:
    body, headers = binary_request([("s", "BYTES", WORDS, True)], parameters={"binary_data_output": True})
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    doc, binary = split_response(response)
    out = doc["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("BYTES", [4])
    assert out["parameters"]["binary_data_size"] == len(encode_bytes(WORDS))  # prefixes included
    assert decode_bytes(binary["s"]) == WORDS


def test_bytes_json_in_and_out(client: TestClient) -> None:
    words = ["a", "", "héllo"]
    body = {"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES", "data": words}]}
    response = client.post("/v2/models/async_echo/infer", json=body)
    assert response.json()["outputs"][0] == {"name": "s", "datatype": "BYTES", "shape": [3], "data": words}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x05\x00\x00\x00abc", "past the end"),  # element longer than its data
        (encode_bytes([b"a"]) + b"\x01\x00\x00", "ends inside element 1"),  # truncated prefix
        (b"\x01\x00", "cannot hold"),  # not even room for the prefixes
        (encode_bytes([b"a", b"b", b"c", b"d", b"e"]), "left after"),  # more elements than the shape
    ],
)
def test_malformed_bytes_tensor_is_400(client: TestClient, raw: bytes, message: str) -> None:
    shape = {"left after": 4, "ends inside element 1": 2}.get(message, 1)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [shape],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/async_echo/infer", content=head + raw, headers={HEADER: str(len(head))}
    )
    assert message in assert_error(response, 400, "invalid_input", "inputs[0]")


def test_huge_bytes_shape_is_refused_before_allocating(client: TestClient) -> None:
    # 2**31 elements announced with 8 bytes of data: must fail fast, not allocate 16 GiB of objects
    head = json.dumps(
        {
            "inputs": [
                {"name": "s", "shape": [1 << 31], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}
            ]
        }
    ).encode()
    started = time.monotonic()
    response = client.post(
        "/v2/models/async_echo/infer", content=head + bytes(8), headers={HEADER: str(len(head))}
    )
    assert time.monotonic() - started < 2
    assert_error(response, 400, "invalid_input", "inputs[0]")


def test_bf16_binary_input(client: TestClient) -> None:
    values = np.array([1.5, -2.0, 3.140625, 0.0], dtype=np.float32)  # exactly representable in BF16
    body, headers = binary_request([("h", "BF16", values, True)])
    assert int(headers[HEADER]) == len(body) - 8  # 2 bytes per element
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    assert out["shape"] == [4]
    assert out["datatype"] == "FP32"  # BF16 is widened to float32 on arrival
    assert out["data"] == values.tolist()


def test_bf16_truncates_like_tritonclient(client: TestClient) -> None:
    value = np.array([1.0 + 2**-10], dtype=np.float32)  # below BF16 precision
    body, headers = binary_request([("h", "BF16", value, True)])
    response = client.post("/v2/models/async_echo/infer", content=body, headers=headers)
    assert response.json()["outputs"][0]["data"] == [1.0]


# -- compression ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_with_binary_section(client: TestClient, encoding: str) -> None:
    body, headers = binary_request([("x", "FP32", X, True)], parameters={"binary_data_output": True})
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    # the header length still refers to the uncompressed JSON
    headers = {**headers, "Content-Encoding": encoding}
    response = client.post("/v2/models/doubler/infer", content=packed, headers=headers)
    assert response.status_code == 200, response.text
    doc, binary = split_response(response)
    np.testing.assert_array_equal(
        np.frombuffer(binary["y"], "<f4").reshape(doc["outputs"][0]["shape"]), X * 2
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_json_request(client: TestClient, encoding: str) -> None:
    raw = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    packed = gzip.compress(raw.encode()) if encoding == "gzip" else zlib.compress(raw.encode())
    response = client.post(
        "/v2/models/doubler/infer", content=packed, headers={"Content-Encoding": encoding.upper()}
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2, 4, 6]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_zip_bomb_is_413(client: TestClient, encoding: str) -> None:
    zeros = bytes(16 << 20)  # 16 MiB of zeros, 16x the limit; compresses to ~16 KiB
    packed = gzip.compress(zeros) if encoding == "gzip" else zlib.compress(zeros)
    assert len(packed) < (1 << 20)
    response = client.post("/v2/models/doubler/infer", content=packed, headers={"Content-Encoding": encoding})
    assert_error(response, 413, "too_large", "body")


@pytest.mark.parametrize(
    ("encoding", "body", "field"),
    [
        ("gzip", b"definitely not gzip", "body"),
        ("deflate", b"\x00\x01\x02", "body"),
        # mtime=0: parameters must be identical in every xdist worker (the header holds the time)
        ("gzip", gzip.compress(b'{"inputs": []}', mtime=0)[:-6], "body"),  # truncated stream
        ("br", b"{}", "content-encoding"),
    ],
    ids=["not-gzip", "not-deflate", "truncated-gzip", "unsupported-encoding"],
)
def test_bad_compressed_body_is_400(client: TestClient, encoding: str, body: bytes, field: str) -> None:
    response = client.post("/v2/models/doubler/infer", content=body, headers={"Content-Encoding": encoding})
    assert_error(response, 400, "invalid_input", field)


# -- framing errors ------------------------------------------------------------------------------


def test_mismatched_binary_data_size_is_400(client: TestClient) -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 20}}
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/doubler/infer", content=head + bytes(20), headers={HEADER: str(len(head))}
    )
    message = assert_error(response, 400, "invalid_input", "inputs[0].parameters.binary_data_size")
    assert "20" in message


def test_binary_data_size_past_the_body_is_400(client: TestClient) -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}}
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/doubler/infer", content=head + bytes(12), headers={HEADER: str(len(head))}
    )
    assert "past the end" in assert_error(response, 400, "invalid_input", "inputs[0]")


def test_unclaimed_binary_bytes_are_400(client: TestClient) -> None:
    body, headers = binary_request([("x", "FP32", X, True)])
    response = client.post("/v2/models/doubler/infer", content=body + b"junk", headers=headers)
    assert_error(response, 400, "invalid_input", "inputs")


@pytest.mark.parametrize("value", ["99999", "-1", "abc", "12.0", ""])
def test_bad_header_length_is_400(client: TestClient, value: str) -> None:
    body, _ = binary_request([("x", "FP32", X, True)])
    response = client.post(
        "/v2/models/doubler/infer",
        content=body,
        headers=[(HEADER.encode(), value.encode("latin-1"))],
    )
    assert_error(response, 400, "invalid_input")


def raw_post(
    client: TestClient, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, Any]:
    """POST through the app's ASGI interface directly: header bytes arrive exactly as given."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "root_path": "",
    }  # fmt: skip

    async def call() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    status = sent[0]["status"]
    return status, json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


@pytest.mark.parametrize(
    ("name", "expected"),
    [(b"inference-header-content-length", 400), (b"content-length", 200)],  # a bad Content-Length is ignored
)
def test_non_ascii_digit_lengths_are_not_500(client: TestClient, name: bytes, expected: int) -> None:
    # "\xb2" (superscript two) passes str.isdigit() but int() refuses it
    body, _ = binary_request([("x", "FP32", X, False)])
    status, doc = raw_post(client, "/v2/models/doubler/infer", [(name, b"\xb2")], body)
    assert status == expected, doc
    if expected == 400:
        assert doc["kind"] == "invalid_input"
        assert doc["field"] == "Inference-Header-Content-Length"


def test_header_length_without_binary_inputs(client: TestClient) -> None:
    raw = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    ok = client.post("/v2/models/doubler/infer", content=raw, headers={HEADER: str(len(raw))})
    assert ok.status_code == 200
    short = client.post("/v2/models/doubler/infer", content=raw, headers={HEADER: str(len(raw) - 1)})
    assert_error(short, 400, "invalid_input")


def test_binary_data_size_must_be_an_integer(client: TestClient) -> None:
    for size in ["24", -1, 2.5, True]:
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [2, 3],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": size},
                    }
                ]
            }
        ).encode()
        response = client.post(
            "/v2/models/doubler/infer", content=head + bytes(24), headers={HEADER: str(len(head))}
        )
        assert_error(response, 400, "invalid_input", "inputs[0]")


def test_non_ascii_content_length_on_starlette_routes(client: TestClient) -> None:
    status, doc = raw_post(client, "/v2/repository/index", [(b"content-length", b"\xb2")], b"")
    assert status == 200
    assert {row["name"] for row in doc} == {"doubler", "async_echo"}
