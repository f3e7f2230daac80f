"""Every data format ``modelyard validate`` reads, down to the same rows for the models."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.sdk import ModelMetadata, TensorSpec
from modelyard.validation.data import load_dataset
from tests.validation.conftest import features, linear
from tests.validation.test_offline import report

X = features(6, seed=7)
META = ModelMetadata(name="m", inputs=(TensorSpec("x", "FP32", [-1, 3]),), outputs=())


def _same_rows(path: Path, labels: str | None = None) -> np.ndarray | None:
    dataset = load_dataset(path, labels)
    assert dataset.rows == 6
    np.testing.assert_allclose(dataset.inputs_for(META)["x"], X, rtol=1e-6)
    assert dataset.inputs_for(META)["x"].dtype == np.float32
    return dataset.labels


def test_npz_by_input_name(tmp_path: Path) -> None:
    np.savez(tmp_path / "rows.npz", x=X, y=np.arange(6))
    assert _same_rows(tmp_path / "rows.npz", "y").tolist() == list(range(6))  # type: ignore[union-attr]


def test_csv_columns_become_the_one_inputs_features(tmp_path: Path) -> None:
    lines = ["a,b,label,c"] + [f"{r[0]!r},{r[1]!r},{i % 2},{r[2]!r}" for i, r in enumerate(X.tolist())]
    # The label column sits between features: it is taken out, the rest keep their order (a, b, c).
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    labels = _same_rows(tmp_path / "rows.csv", "label")
    assert labels is not None
    assert (labels.dtype, labels.tolist()) == (np.int64, [0, 1, 0, 1, 0, 1])


def test_csv_columns_named_after_the_inputs(tmp_path: Path) -> None:
    meta = ModelMetadata(
        name="m", inputs=(TensorSpec("age", "INT64", [-1]), TensorSpec("city", "BYTES", [-1, 1])), outputs=()
    )
    (tmp_path / "rows.csv").write_text("city,age\nParis,31\nLyon,40\n")
    inputs = load_dataset(tmp_path / "rows.csv").inputs_for(meta)
    assert inputs["age"].tolist() == [31, 40]
    assert inputs["city"].tolist() == [["Paris"], ["Lyon"]]
    # The missing inputs are named, the data's own columns only counted: a job's error is read by
    # viewers, and the file may not be theirs to read.
    expected = r"takes inputs \['age', 'z'\]; the data \(2 columns\) has no column 'z': name each input's"
    with pytest.raises(InvalidInput, match=expected):
        load_dataset(tmp_path / "rows.csv").inputs_for(ModelMetadata(name="m", inputs=(
            TensorSpec("age", "INT64", [-1]), TensorSpec("z", "FP32", [-1])), outputs=()))  # fmt: skip


def test_a_ragged_csv_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInput, match=r"rows.csv:3: 1 fields, the header has 2"):
        load_dataset(tmp_path / "rows.csv")


def test_parquet(tmp_path: Path) -> None:
    try:
        import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        (tmp_path / "rows.parquet").write_bytes(b"PAR1")
        with pytest.raises(InvalidInput, match=r"needs pyarrow: pip install 'modelyard\[parquet\]'"):
            load_dataset(tmp_path / "rows.parquet")
        pytest.skip("pyarrow is not installed (the parquet extra)")
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": np.arange(6)})
    pq.write_table(table, tmp_path / "rows.parquet")
    assert _same_rows(tmp_path / "rows.parquet", "label") is not None


def test_jsonl_of_v2_requests_with_labels_beside_them(tmp_path: Path) -> None:
    lines = [
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X[:2].ravel().tolist()}],
         "label": [1, 0]},
        {"inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP32", "data": X[2:].tolist()}],
         "label": [0, 0, 1, 1]},
    ]  # fmt: skip
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert _same_rows(tmp_path / "rows.jsonl", "label").tolist() == [1, 0, 0, 0, 1, 1]  # type: ignore[union-attr]


def test_jsonl_of_tfserving_requests_rows_and_columns(tmp_path: Path) -> None:
    lines = [{"instances": X[:3].tolist()}, {"inputs": {"x": X[3:].tolist()}}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    assert load_dataset(tmp_path / "rows.jsonl").format == "jsonl"
    _same_rows(tmp_path / "rows.jsonl")


def _record(role: str, status: int, body: str | None, protocol: str = "v2") -> dict[str, object]:
    return {
        "time": 1.0, "request_id": "r", "project": "p", "model": "m", "version": "v1", "replica": "",
        "role": role, "protocol": protocol, "status": status, "latency_ms": 1.0, "request_bytes": 0,
        "response_bytes": 0, "request_body": body, "response_body": None,
    }  # fmt: skip


def test_the_gateways_inference_log_replays_primary_answered_requests(tmp_path: Path) -> None:
    as_json = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": X[:2].ravel().tolist()}]}
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [3, 3], "datatype": "FP32", "parameters": {"binary_data_size": 36}}
            ]
        }
    ).encode()
    binary = "b64:" + base64.b64encode(header + X[2:5].tobytes()).decode()
    records = [
        _record("primary", 200, json.dumps(as_json)),
        _record("mirror", 200, json.dumps(as_json)),  # a mirrored copy: the same request again
        _record("primary", 503, json.dumps(as_json)),  # failed: not replayed
        _record("primary", 200, None),  # logged without its payload
        _record("primary", 200, binary),  # the binary tensor extension
        _record("primary", 200, json.dumps({"instances": X[5:].tolist()}), protocol="tfserving"),
    ]
    (tmp_path / "inference.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert load_dataset(tmp_path / "inference.jsonl").format == "log"
    _same_rows(tmp_path / "inference.jsonl")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "rows.jsonl:1: not JSON"),
        ("[1, 2]", "each line must be a JSON object"),
        ('{"rows": [1]}', "neither a V2 request"),
        ('{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}', "rows.jsonl:1:"),
        ('{"instances": [[1, 2, 3]], "label": [1, 2]}', "2 labels for 1 rows"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "rows.jsonl").write_text(line + "\n")
    with pytest.raises(InvalidInput, match=message):
        load_dataset(tmp_path / "rows.jsonl", "label").inputs_for(META)


def test_a_log_without_payloads_says_what_to_set(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text(json.dumps(_record("primary", 200, None)) + "\n")
    with pytest.raises(InvalidInput, match="payload mode 'full'"):
        load_dataset(tmp_path / "rows.jsonl")


def test_validate_runs_on_a_csv_and_on_a_request_log(tmp_path: Path) -> None:
    base, same = linear(tmp_path / "base.onnx"), linear(tmp_path / "same.onnx", note="copy")
    rows = features(50, seed=8)
    (tmp_path / "rows.csv").write_text("a,b,c\n" + "\n".join(",".join(map(repr, r)) for r in rows.tolist()))
    requests = [{"instances": rows[i : i + 10].tolist()} for i in range(0, 50, 10)]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in requests))
    for data in ("rows.csv", "rows.jsonl"):
        code, found = report(same, "--baseline", base, "--data", tmp_path / data)
        assert (code, found["summary"]["compared"], found["summary"]["agreement"]) == (0, 50, 1.0), data
