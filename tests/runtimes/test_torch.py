"""The PyTorch runtime: tiny modules saved as TorchScript and as torch.export programs, then served."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from modelyard.runtimes.torch import TorchModel
from tests.support import tensor

# TorchScript is deprecated in recent PyTorch; serving it is still supported.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.* is deprecated:DeprecationWarning")


class Affine(torch.nn.Module):
    """[n, 3] -> [n, 2]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x)) + 0.5


class TwoInOut(torch.nn.Module):
    """Two inputs whose order matters; a tuple of two outputs."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x - scale, (x * scale).sum(dim=1)


class Named(torch.nn.Module):
    """A dict of outputs; an integer input."""

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"doubled": x * 2, "next_id": ids + 1}


def script(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> Path:
    batch = torch.export.Dim("batch")
    names = ["x", "ids"][: len(args)]
    program = torch.export.export(module, args, dynamic_shapes={n: {0: batch} for n in names})
    torch.export.save(program, str(path))
    return path


def infer(client: TestClient, model: str, *inputs: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v2/models/{model}/infer", json={"inputs": list(inputs)})
    assert response.status_code == 200, response.text
    return {out["name"]: out for out in response.json()["outputs"]}


X = np.arange(-6, 6, dtype=np.float32).reshape(4, 3) / 3


def test_torchscript_declares_no_signature_and_matches_the_module(tmp_path: Path, serve: Any) -> None:
    client = serve(script(Affine(), tmp_path / "affine.pt"))
    doc = client.get("/v2/models/affine").json()
    assert doc["platform"] == "pytorch_torchscript"
    assert doc["inputs"] == []
    assert doc["parameters"]["labels"]["forward_parameters"] == "x"
    outputs = infer(client, "affine", tensor("whatever", X))  # no signature: any name is accepted
    assert outputs["output0"]["shape"] == [4, 2]
    with torch.inference_mode():
        expected = Affine()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(outputs["output0"]["data"], expected.ravel(), rtol=1e-6)


def test_torchscript_inputs_go_by_parameter_name_else_in_order(tmp_path: Path, serve: Any) -> None:
    client = serve(script(TwoInOut(), tmp_path / "two.pth"))
    scale = np.full((4, 3), 2.0, dtype=np.float32)
    by_name = infer(client, "two", tensor("scale", scale), tensor("x", X))  # reversed, but named
    np.testing.assert_allclose(by_name["output0"]["data"], (X - scale).ravel())
    np.testing.assert_allclose(by_name["output1"]["data"], (X * scale).sum(axis=1), rtol=1e-6)
    in_order = infer(client, "two", tensor("a", X), tensor("b", scale))  # unknown names: positional
    np.testing.assert_allclose(in_order["output0"]["data"], (X - scale).ravel())


def test_torchscript_dict_outputs_keep_their_keys(tmp_path: Path, serve: Any) -> None:
    client = serve(script(Named(), tmp_path / "named.ts"))
    ids = np.array([3, 7, 9, 11], dtype=np.int64)
    outputs = infer(client, "named", tensor("x", X), tensor("ids", ids, "INT64"))
    assert set(outputs) == {"doubled", "next_id"}
    assert outputs["next_id"] == {
        "name": "next_id",
        "datatype": "INT64",
        "shape": [4],
        "data": [4, 8, 10, 12],
    }
    np.testing.assert_allclose(outputs["doubled"]["data"], (X * 2).ravel())


def test_torchscript_refuses_bytes_with_a_400(tmp_path: Path, serve: Any) -> None:
    client = serve(script(Affine(), tmp_path / "affine.pt"))
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}
    response = client.post("/v2/models/affine/infer", json=body)
    assert response.status_code == 400
    assert "'x' is BYTES" in response.json()["error"]


def test_export_signature_is_read_from_the_program(tmp_path: Path, serve: Any) -> None:
    path = export(Affine(), (torch.from_numpy(X),), tmp_path / "affine.pt2")
    client = serve(path)
    doc = client.get("/v2/models/affine").json()
    assert doc["platform"] == "pytorch_export"
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert doc["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, 2]}]
    outputs = infer(client, "affine", tensor("x", X[:1]))  # a batch of 1 though exported with 4
    with torch.inference_mode():
        expected = Affine()(torch.from_numpy(X[:1])).numpy()
    np.testing.assert_allclose(outputs["output0"]["data"], expected.ravel(), rtol=1e-6)
    response = client.post(
        "/v2/models/affine/infer", json={"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "x.shape"


def test_export_dict_outputs_and_integer_inputs(tmp_path: Path, serve: Any) -> None:
    ids = torch.arange(4)
    client = serve(export(Named(), (torch.from_numpy(X), ids), tmp_path / "named.pt2"))
    doc = client.get("/v2/models/named").json()
    assert doc["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "ids", "datatype": "INT64", "shape": [-1]},
    ]
    assert doc["outputs"] == [
        {"name": "doubled", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "next_id", "datatype": "INT64", "shape": [-1]},
    ]
    outputs = infer(client, "named", tensor("ids", np.array([5, 6], np.int64), "INT64"), tensor("x", X[:2]))
    assert outputs["next_id"]["data"] == [6, 7]
    np.testing.assert_allclose(outputs["doubled"]["data"], (X[:2] * 2).ravel())


def test_export_concurrent_requests_are_batched(tmp_path: Path, serve: Any) -> None:
    client = serve(export(Affine(), (torch.from_numpy(X),), tmp_path / "affine.pt2"), max_latency_ms=50)
    n = 16
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def call(i: int) -> None:
        barrier.wait()
        results[i] = infer(client, "affine", tensor("x", np.full((1, 3), i, np.float32)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    module = Affine()
    with torch.inference_mode():
        expected = module(torch.arange(n, dtype=torch.float32)[:, None].expand(n, 3)).numpy()
    for i, outputs in enumerate(results):  # each request got its own row back
        np.testing.assert_allclose(outputs["output0"]["data"], expected[i], rtol=1e-6)
    metrics = client.get("/metrics").text
    line = next(s for s in metrics.splitlines() if s.startswith("modelyard_inference_exec_count_total"))
    assert float(line.split()[-1]) < n


def test_a_state_dict_is_not_torchscript(tmp_path: Path, serve: Any) -> None:
    path = tmp_path / "weights.pt"
    torch.save(Affine().state_dict(), path)
    client = serve(path)
    startup = client.get("/health/startup")
    assert startup.status_code == 503
    assert "not a TorchScript archive" in startup.json()["error"]


def test_intra_op_threads_sets_torch_threads(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    before = torch.get_num_threads()
    try:
        TorchModel(path=str(path), name="affine", intra_op_threads=2).load()
        assert torch.get_num_threads() == 2
        TorchModel(path=str(path), name="affine", intra_op_threads=0).load()  # 0: leave it alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_missing_torch_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'modelyard\[torch\]'"):
        TorchModel(path=str(tmp_path / "m.pt2"), name="m").load()
