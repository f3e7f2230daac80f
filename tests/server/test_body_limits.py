"""Bodies that cost far more to decode than to send: gzip bombs and JSON made of nested lists.

A 61 KB gzip body inflating to 63 MB of ``[0],`` held a model server's event loop for 12 s and took
it to 2 GB; three at once held a normal request 34 s. Now the inflated size is capped
(``max_inflated_bytes``), inflation runs off the event loop, and JSON with more arrays and objects
than ``max_json_containers`` is refused before it is parsed.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelyard.server import Settings
from modelyard.server.app import build_app
from modelyard.server.protocols.limits import JsonTooLarge, check_json
from tests import models
from tests.server.serving import infer, post, serving

INFER = "/v2/models/picky/infer"
ROWS_PER_CHUNK = 1 << 18


def nested_rows(rows: int) -> bytes:
    """Picky's input as nested JSON rows: ``[[0],[0],...]``, four bytes and one list per row."""
    return (
        b'{"inputs":[{"name":"x","shape":[%d,1],"datatype":"FP32","data":[' % rows
        + b"[0]," * (rows - 1)
        + b"[0]]}]}"
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """The reported body: 61 KB of gzip that inflates to 63 MB of ``[0],`` rows (built in pieces)."""
    rows = 60 * ROWS_PER_CHUNK
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflate.compress(b'{"inputs":[{"name":"x","shape":[%d,1],"datatype":"FP32","data":[' % rows)]
    chunk = b"[0]," * ROWS_PER_CHUNK
    parts += [deflate.compress(chunk) for _ in range(60)]
    parts += [deflate.compress(b"[0]]}]}"), deflate.flush()]
    body = b"".join(parts)
    assert len(body) < 70_000
    return body


def send_all(
    port: int, bodies: list[bytes], headers: dict[str, str]
) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = []

    def one(body: bytes) -> None:
        try:
            results.append(post(port, INFER, body, headers, timeout=30))
        except Exception as exc:  # a timeout is a result too (and a failure)
            results.append(exc)

    threads = [threading.Thread(target=one, args=(body,), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
    return threads, results


def worst_latency_while(threads: list[threading.Thread], port: int) -> float:
    """Normal requests, one after the other, until ``threads`` finish (at least five)."""
    worst, count = 0.0, 0
    while count < 5 or any(thread.is_alive() for thread in threads):
        worst = max(worst, infer(port, timeout=5))
        count += 1
        time.sleep(0.01)
    return worst


@pytest.mark.slow
def test_gzip_bombs_get_413_and_never_hold_a_normal_request(tmp_path: Path, bomb: bytes) -> None:
    with serving(tmp_path) as server:
        infer(server.port)
        threads, results = send_all(server.port, [bomb] * 3, {"content-encoding": "gzip"})
        worst = worst_latency_while(threads, server.port)
        assert worst < 1.0, f"a normal request waited {worst:.2f} s behind the bombs"
        assert len(results) == 3
        for result in results:
            assert not isinstance(result, Exception), result
            status, answer, took = result
            assert (status, answer["kind"], answer["field"]) == (413, "too_large", "body"), answer
            assert "inflates (gzip) to more than 8388608 bytes" in answer["error"]
            assert took < 5
        # Inflation stopped at the limit: nowhere near the 2 GB the whole body decoded to.
        assert server.peak_rss_mb() < 500, server.peak_rss_mb()


@pytest.mark.slow
def test_bodies_within_the_inflated_limit_cannot_hold_a_normal_request_either(tmp_path: Path) -> None:
    """Under 8 MiB inflated: the nested rows are refused for their lists before parsing, and the
    flat ones (a number each) decode in bounded time."""
    rows = 2_000_000
    nested = gzip.compress(nested_rows(rows), 6)
    flat = gzip.compress(
        b'{"inputs":[{"name":"x","shape":[%d,1],"datatype":"FP32","data":[' % rows
        + b"0," * (rows - 1)
        + b"0]}]}",
        6,
    )
    with serving(tmp_path) as server:
        infer(server.port)
        threads, results = send_all(server.port, [nested, nested, flat], {"content-encoding": "gzip"})
        worst = worst_latency_while(threads, server.port)
        assert worst < 1.0, f"a normal request waited {worst:.2f} s"
        assert sorted(result[0] for result in results) == [200, 413, 413], results
        for status, answer, _ in results:
            if status == 413:
                assert answer["field"] == "body"
                assert "max_json_containers" in answer["error"]


@pytest.mark.slow
def test_a_large_plain_json_body_is_refused_before_decoding(tmp_path: Path) -> None:
    """No compression needed to make decoding cost: 60 MiB of plain JSON numbers (under the 64 MiB
    body limit) decoded for seconds; over max_json_bytes it is refused unread by the decoder."""
    rows = 30_000_000
    body = (
        b'{"inputs":[{"name":"x","shape":[%d,1],"datatype":"FP32","data":[' % rows + b"0," * rows + b"0]}]}"
    )
    with serving(tmp_path) as server:
        infer(server.port)
        threads, results = send_all(server.port, [body], {})
        worst = worst_latency_while(threads, server.port)
        assert worst < 1.0, f"a normal request waited {worst:.2f} s"
        ((status, answer, took),) = results
        assert (status, answer["field"]) == (413, "body"), answer
        assert "max_json_bytes" in answer["error"]
        assert took < 5


# --- in-process: the limits themselves ------------------------------------------------------------


@pytest.fixture
def small_limits() -> Iterator[TestClient]:
    settings = Settings(max_inflated_bytes=4096, max_json_containers=100)
    with TestClient(build_app(settings, [models.Picky, models.Doubler])) as client:
        yield client


def picky_body(rows: int, nested: bool) -> bytes:
    data: list[Any] = [[1.0]] * rows if nested else [1.0] * rows
    return json.dumps(
        {"inputs": [{"name": "x", "shape": [rows, 1], "datatype": "FP32", "data": data}]}
    ).encode()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_inflating_past_max_inflated_bytes_is_413(small_limits: TestClient, encoding: str) -> None:
    def compress(raw: bytes) -> bytes:
        return gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)

    under = picky_body(300, nested=False)  # about 1.5 KB of JSON
    over = picky_body(1000, nested=False)  # about 5 KB: past 4096 once inflated, small as sent
    assert len(under) < 4096 < len(over)
    assert len(compress(over)) < 4096
    headers = {"content-encoding": encoding}
    assert small_limits.post(INFER, content=compress(under), headers=headers).status_code == 200
    answer = small_limits.post(INFER, content=compress(over), headers=headers)
    assert answer.status_code == 413
    assert answer.json()["field"] == "body"
    assert f"inflates ({encoding}) to more than 4096 bytes" in answer.json()["error"]
    # TF Serving's :predict reads bodies the same way.
    tf_body = compress(json.dumps({"instances": [[1.0]] * 1000}).encode())
    answer = small_limits.post("/v1/models/picky:predict", content=tf_body, headers=headers)
    assert (answer.status_code, answer.json()["field"]) == (413, "body")


def test_json_over_max_json_bytes_is_413_and_binary_tensors_are_not_json() -> None:
    settings = Settings(max_json_bytes=2048)
    with TestClient(build_app(settings, [models.Picky])) as client:
        over = picky_body(500, nested=False)
        assert len(over) > 2048
        for content, headers in ((over, {}), (gzip.compress(over), {"content-encoding": "gzip"})):
            answer = client.post(INFER, content=content, headers=headers)
            assert (answer.status_code, answer.json()["field"]) == (413, "body")
            assert "max_json_bytes" in answer.json()["error"]
        tf = client.post("/v1/models/picky:predict", json={"inputs": [[1.0]] * 500})
        assert (tf.status_code, tf.json()["field"]) == (413, "body")
        # The same 500 values as a binary tensor: only the short JSON part counts.
        raw = np.ones(500, dtype="<f4").tobytes()
        tensor = {
            "name": "x",
            "shape": [500, 1],
            "datatype": "FP32",
            "parameters": {"binary_data_size": len(raw)},
        }
        header = json.dumps({"inputs": [tensor]}).encode()
        answer = client.post(
            INFER, content=header + raw, headers={"inference-header-content-length": str(len(header))}
        )
        assert answer.status_code == 200, answer.text


def test_json_with_too_many_arrays_and_objects_is_413_before_decoding(small_limits: TestClient) -> None:
    answer = small_limits.post(INFER, content=picky_body(200, nested=True))
    assert answer.status_code == 413, answer.text
    assert answer.json() == {
        "error": answer.json()["error"],
        "kind": "too_large",
        "field": "body",
    }
    assert "max_json_containers" in answer.json()["error"]
    # The same tensor sent flat has three containers: fine.
    assert small_limits.post(INFER, content=picky_body(200, nested=False)).status_code == 200
    # TF Serving's row format: one list per instance.
    answer = small_limits.post("/v1/models/picky:predict", json={"instances": [[1.0]] * 200})
    assert (answer.status_code, answer.json()["field"]) == (413, "body")
    assert small_limits.post("/v1/models/picky:predict", json={"instances": [[1.0]] * 50}).status_code == 200


def test_binary_tensor_bytes_are_not_counted_as_json(small_limits: TestClient) -> None:
    """Only the JSON part of a binary-extension request is counted: raw tensor bytes may be '['."""
    raw = b"[" * 4 * 500  # 500 FP32 values whose bytes are all '['
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [500, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    answer = small_limits.post(
        INFER,
        content=header + raw,
        headers={
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )
    assert answer.status_code == 200, answer.text
    expected = np.frombuffer(raw, dtype="<f4") + 1  # Picky adds one
    np.testing.assert_allclose(np.ravel(answer.json()["outputs"][0]["data"]), expected, rtol=1e-6)


def test_counting_errs_high_never_low() -> None:
    check_json(b"[" * 10, 1024, 10)  # at the limit: fine
    check_json(b'{"a": "[[[[[[[[[[[[[[[["}', 1024, 100)  # shorter than the limit: never counted
    for text in (b"[" * 11, b"{" * 11, b"[{" * 6, b'["' + b"[" * 20 + b'"]'):
        with pytest.raises(JsonTooLarge, match="max_json_containers") as caught:
            check_json(text, 1024, 10)
        assert caught.value.field == "body"
    with pytest.raises(JsonTooLarge, match=r"is 1025 bytes, more than the 1024 .*max_json_bytes"):
        check_json(b" " * 1025, 1024, 10)


def test_more_data_items_than_the_shape_holds_is_refused_before_numpy_walks_them() -> None:
    with TestClient(build_app(Settings(), [models.Picky])) as client:
        body = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[]] * 10_000}]}
        answer = client.post(INFER, json=body)
        assert answer.status_code == 400
        assert answer.json()["field"] == "inputs[0].data"
        assert "10000 items but shape [2, 1] needs 2 elements" in answer.json()["error"]
