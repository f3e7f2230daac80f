"""The Open Inference Protocol over gRPC, spoken by the real, unmodified tritonclient.grpc to a real
``modelyard serve --grpc-port 0`` process: health, metadata, infer (raw tensors, sync, async,
asyncio, streamed), the repository extension and its guard, errors as status codes, deadlines,
message size limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.serving import ROOT
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN, AnnouncedProcess

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc_aio_client = pytest.importorskip("tritonclient.grpc.aio")
grpc = pytest.importorskip("grpc")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

# One worker for the module: its servers start once, not once per xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grpc")]

MODELS = ROOT / "tests" / "models.py"
SLEEPER = f"{ROOT / 'tests' / 'server' / 'grpc_models.py'}:Sleeper"
X = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) * 1.25
LIMIT_MB = 1  # the module server's --grpc-max-message-mb


@dataclass(frozen=True)
class GrpcServed:
    rest: str  # http://host:port
    grpc: str  # host:port, as tritonclient.grpc takes it


@contextlib.contextmanager
def grpc_serving(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[GrpcServed]:
    """``modelyard serve ARGS --port 0 --grpc-port 0``; both URLs once gRPC listens too."""
    argv = [sys.executable, "-m", "modelyard.cli.main", "serve", *args, "--port", "0", "--grpc-port", "0"]
    argv += ["--log-level", "warning"]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    server = AnnouncedProcess(argv, tmp / "server-stderr.txt", cwd=ROOT, env=full_env)
    try:
        rest = server.wait_until_serving(timeout=60)
        server.component = "grpc"  # announced right after REST, once the gRPC port listens
        grpc_url = server.wait_until_serving(timeout=30)
        yield GrpcServed(rest, grpc_url.removeprefix("http://"))
    finally:
        server.proc.kill()
        server.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServed]:
    models = [f"{MODELS}:{name}" for name in ("Doubler", "AsyncEcho", "Picky", "Lister")]
    with grpc_serving(tmp_path_factory.mktemp("grpc"), *models, "--grpc-max-message-mb", str(LIMIT_MB)) as s:
        yield s


@pytest.fixture
def client(served: GrpcServed) -> Iterator[Any]:
    triton = grpcclient.InferenceServerClient(served.grpc)
    try:
        yield triton
    finally:
        triton.close()


def fp32(array: np.ndarray, name: str = "x") -> Any:
    tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)  # tritonclient.grpc always sends raw_input_contents
    return tensor


def code_of(info: pytest.ExceptionInfo[Any]) -> Any:
    return info.value.status()  # "StatusCode.NOT_FOUND" as tritonclient renders grpc's code


# -- health and metadata -------------------------------------------------------------------------


def test_health(client: Any) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("doubler") is True
    assert client.is_model_ready("doubler", "1") is True
    assert client.is_model_ready("nope") is False  # as tritonclient.http sees an unknown model


def test_server_metadata(client: Any) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "modelyard"
    assert meta["version"]
    assert "model_repository" in meta["extensions"]
    assert "model_configuration" not in meta["extensions"]  # ModelConfig is not served over gRPC


def test_model_metadata(client: Any) -> None:
    meta = client.get_model_metadata("doubler", as_json=True)
    assert meta["name"] == "doubler"
    assert meta["versions"] == ["1"]
    assert meta["platform"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "3"]}]  # int64 in JSON
    assert client.get_model_metadata("doubler", "1", as_json=True) == meta
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nope")
    assert code_of(info) == "StatusCode.NOT_FOUND"
    assert "model 'nope' not found" in info.value.message()


def test_repository_index(client: Any) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {row["name"] for row in index} == {"doubler", "async_echo", "picky", "lister"}
    assert all(row["state"] == "READY" for row in index)


# -- inference -----------------------------------------------------------------------------------


def test_infer_raw_in_raw_out(client: Any) -> None:
    result = client.infer(
        "doubler", [fp32(X)], outputs=[grpcclient.InferRequestedOutput("y")], request_id="r-1"
    )
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("r-1", "doubler", "1")
    assert len(response.raw_output_contents) == 1  # raw in, raw out
    assert not response.outputs[0].HasField("contents")


def test_infer_explicit_version_and_all_outputs(client: Any) -> None:
    result = client.infer("doubler", [fp32(X)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("y"), X * 2)


def test_several_datatypes_round_trip_raw(client: Any) -> None:
    arrays = {
        "i8": ("INT8", np.array([-128, 0, 127], dtype=np.int8)),
        "u16": ("UINT16", np.array([[0, 65535]], dtype=np.uint16)),
        "i64": ("INT64", np.array([-(2**62), 2**62], dtype=np.int64)),
        "f16": ("FP16", np.array([0.5, -1.25], dtype=np.float16)),
        "f64": ("FP64", np.array([1e-300, 1e300], dtype=np.float64)),
        "b": ("BOOL", np.array([True, False, True], dtype=np.bool_)),
        "s": ("BYTES", np.array([b"alpha", b"", "h\u00e9llo".encode()], dtype=np.object_)),
    }
    inputs = []
    for name, (datatype, array) in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("async_echo", inputs)
    for name, (_, array) in arrays.items():
        out = result.as_numpy(name)
        assert out.dtype == array.dtype, name
        np.testing.assert_array_equal(out, array)


def test_list_batched_model_with_pre_and_postprocess(client: Any) -> None:
    result = client.infer("lister", [fp32(np.array([1.0, 2.0, 3.5], np.float32))])
    np.testing.assert_array_equal(result.as_numpy("total"), np.array([65.0]))


def test_async_infer_with_callbacks_batches_like_rest(client: Any) -> None:
    answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    arrays = [X + i for i in range(8)]
    for i, array in enumerate(arrays):
        client.async_infer(
            "doubler", [fp32(array)], lambda result, error, i=i: answers.put((i, result, error)),
            request_id=str(i),
        )  # fmt: skip
    for _ in arrays:
        i, result, error = answers.get(timeout=30)
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("y"), arrays[i] * 2)
        assert result.get_response().id == str(i)


def test_the_asyncio_client(served: GrpcServed) -> None:
    async def run() -> list[np.ndarray]:
        triton = grpc_aio_client.InferenceServerClient(served.grpc)
        try:
            assert await triton.is_model_ready("doubler") is True
            results = await asyncio.gather(*(triton.infer("doubler", [fp32(X + i)]) for i in range(6)))
            return [result.as_numpy("y") for result in results]
        finally:
            await triton.close()

    for i, out in enumerate(asyncio.run(run())):
        np.testing.assert_array_equal(out, (X + i) * 2)


def test_streaming_answers_in_order_and_goes_on_after_an_error(client: Any) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(lambda result, error: answers.put((result, error)))
    try:
        for i in range(5):
            client.async_stream_infer("doubler", [fp32(X + i)], request_id=f"s{i}")
        client.async_stream_infer("nope", [fp32(X)], request_id="bad")
        client.async_stream_infer("doubler", [fp32(X + 9)], request_id="after")
        got = [answers.get(timeout=30) for _ in range(7)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(got[:5]):
        assert error is None, error
        assert result.get_response().id == f"s{i}"  # arrival order
        np.testing.assert_array_equal(result.as_numpy("y"), (X + i) * 2)
    result, error = got[5]
    assert result is None
    assert "model 'nope' not found" in error.message()
    result, error = got[6]  # the stream survived the error
    assert error is None
    np.testing.assert_array_equal(result.as_numpy("y"), (X + 9) * 2)


# -- errors carry our message and the table's code -----------------------------------------------


def test_unknown_model_is_not_found(client: Any) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [fp32(X)])
    assert code_of(info) == "StatusCode.NOT_FOUND"
    assert "model 'nope' not found" in info.value.message()


def test_bad_input_is_invalid_argument_naming_the_input(client: Any) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("doubler", [fp32(np.zeros((1, 2), np.float32))])
    assert code_of(info) == "StatusCode.INVALID_ARGUMENT"
    assert "input 'x' has shape [1, 2]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.infer("doubler", [fp32(X, name="z")])
    assert code_of(info) == "StatusCode.INVALID_ARGUMENT"
    assert "'z'" in info.value.message()


def test_a_failing_model_is_internal_with_the_models_message(client: Any) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("picky", [fp32(np.array([[-1.0]], np.float32))])
    assert code_of(info) == "StatusCode.INTERNAL"
    assert "negative values are not allowed" in info.value.message()
    np.testing.assert_array_equal(
        client.infer("picky", [fp32(np.array([[1.0]], np.float32))]).as_numpy("y"), [[2.0]]
    )


def test_malformed_raw_contents_name_the_field_in_message_and_trailers(served: GrpcServed) -> None:
    # tritonclient never sends these; the generated stub of our own proto does, as any client may.
    from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
    from modelyard.server.protocols.grpc_v2.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    request = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 24, b"extra"])
    request.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    short = pb.ModelInferRequest(model_name="doubler", raw_input_contents=[b"\0" * 20])
    short.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    with grpc.insecure_channel(served.grpc) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for bad, field in ((request, "raw_input_contents"), (short, "raw_input_contents[0]")):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(bad, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in info.value.details()
            trailers = dict(info.value.trailing_metadata())
            assert trailers["modelyard-error-kind"] == "invalid_input"
            assert trailers["modelyard-error-field"] == field


def test_typed_contents_in_typed_contents_out(served: GrpcServed) -> None:
    from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
    from modelyard.server.protocols.grpc_v2.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    request = pb.ModelInferRequest(model_name="doubler", id="t")
    request.inputs.add(name="x", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(X.ravel())
    with grpc.insecure_channel(served.grpc) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert list(answer.raw_output_contents) == []
    assert list(answer.outputs[0].shape) == [2, 3]
    np.testing.assert_array_equal(np.array(answer.outputs[0].contents.fp32_contents), (X * 2).ravel())


def test_model_control_is_off_permission_denied(client: Any) -> None:
    for headers in (None, CONTROL_HEADERS):
        for call in (client.unload_model, client.load_model):
            with pytest.raises(InferenceServerException) as info:
                call("doubler", headers=headers)
            assert code_of(info) == "StatusCode.PERMISSION_DENIED"
            assert "--model-control" in info.value.message()
    assert client.is_model_ready("doubler") is True  # nothing was unloaded


# -- message size --------------------------------------------------------------------------------


def test_a_message_over_the_limit_is_resource_exhausted(client: Any) -> None:
    rows = (LIMIT_MB << 20) // 12  # FP32 [rows, 3]: just about the limit in tensor bytes alone
    small = np.ones((rows // 2, 3), np.float32)
    np.testing.assert_array_equal(client.infer("doubler", [fp32(small)]).as_numpy("y"), small * 2)
    with pytest.raises(InferenceServerException) as info:
        client.infer("doubler", [fp32(np.ones((rows + 1000, 3), np.float32))])
    assert code_of(info) == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live() is True


# -- a server of its own: model control on ------------------------------------------------------


def test_model_control_on_needs_the_token_then_unloads_and_loads(tmp_path: Path) -> None:
    env = {"MODELYARD_MODEL_CONTROL_TOKEN": CONTROL_TOKEN}
    with grpc_serving(tmp_path, f"{MODELS}:Lister", "--model-control", env=env) as served:
        triton = grpcclient.InferenceServerClient(served.grpc)
        try:
            for headers in (None, {"authorization": "Bearer wrong-token-of-some-length"}):
                with pytest.raises(InferenceServerException) as info:
                    triton.unload_model("lister", headers=headers)
                assert code_of(info) == "StatusCode.UNAUTHENTICATED"
            assert triton.is_model_ready("lister") is True
            triton.unload_model("lister", headers=CONTROL_HEADERS)
            assert triton.is_model_ready("lister") is False
            assert triton.is_server_ready() is False
            with pytest.raises(InferenceServerException) as info:
                triton.infer("lister", [fp32(np.array([1.0], np.float32))])
            assert code_of(info) == "StatusCode.UNAVAILABLE"
            assert "not ready" in info.value.message()
            triton.load_model("lister", headers=CONTROL_HEADERS)
            assert triton.is_model_ready("lister") is True
            np.testing.assert_array_equal(
                triton.infer("lister", [fp32(np.array([1.0], np.float32))]).as_numpy("total"), [10.0]
            )
            with pytest.raises(InferenceServerException) as info:
                triton.load_model("nope", headers=CONTROL_HEADERS)
            assert code_of(info) == "StatusCode.NOT_FOUND"
        finally:
            triton.close()


# -- a server of its own: a model held busy (deadlines, a full queue) ---------------------------


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GrpcServed, Path]]:
    markers = tmp_path_factory.mktemp("markers")
    env = {"MODELYARD_TEST_MARKERS": str(markers)}
    tmp = tmp_path_factory.mktemp("sleeper")
    with grpc_serving(tmp, SLEEPER, "--max-queue", "1", env=env) as served:
        yield served, markers


def seconds(value: float) -> Any:
    return fp32(np.array([[value]], np.float32), name="seconds")


def queue_depth(rest: str) -> float:
    with urllib.request.urlopen(f"{rest}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('modelyard_queue_depth{model="sleeper"}'):
                return float(line.split()[-1])
    raise AssertionError("no queue_depth series for the sleeper")


def calls(markers: Path) -> int:
    return len(list(markers.iterdir()))


@contextlib.contextmanager
def model_busy(client: Any, markers: Path, hold_s: float) -> Iterator[None]:
    """The sleeper runs a request of ``hold_s`` seconds for the block (waits for it to start and end)."""
    before = calls(markers)
    done: queue.Queue[Any] = queue.Queue()
    client.async_infer("sleeper", [seconds(hold_s)], lambda result, error: done.put(error))
    give_up = time.monotonic() + 30
    while calls(markers) == before:  # the model has taken it: the queue is empty again
        assert time.monotonic() < give_up, "the busy request never reached the model"
        time.sleep(0.01)
    yield
    assert done.get(timeout=30) is None


def test_a_client_deadline_that_passes_in_the_queue_is_never_computed(
    sleeper: tuple[GrpcServed, Path],
) -> None:
    served, markers = sleeper
    triton = grpcclient.InferenceServerClient(served.grpc)
    try:
        with model_busy(triton, markers, 1.5):
            before = calls(markers)
            with pytest.raises(InferenceServerException) as info:
                triton.infer("sleeper", [seconds(0.0)], client_timeout=0.2)
            assert code_of(info) == "StatusCode.DEADLINE_EXCEEDED"
        # The model is free again: the expired request would have run by now if it were still queued.
        triton.infer("sleeper", [seconds(0.0)])
        assert calls(markers) == before + 1  # that one ran; the expired one never did
    finally:
        triton.close()


def test_the_timeout_parameter_expires_in_the_queue_with_our_message(
    sleeper: tuple[GrpcServed, Path],
) -> None:
    served, markers = sleeper
    triton = grpcclient.InferenceServerClient(served.grpc)
    try:
        with model_busy(triton, markers, 1.0):
            with pytest.raises(InferenceServerException) as info:
                triton.infer("sleeper", [seconds(0.0)], timeout=200_000)  # microseconds
            assert code_of(info) == "StatusCode.DEADLINE_EXCEEDED"
            assert "did not complete within 0.2 s" in info.value.message()
    finally:
        triton.close()


def test_a_full_queue_is_resource_exhausted(sleeper: tuple[GrpcServed, Path]) -> None:
    served, markers = sleeper
    triton = grpcclient.InferenceServerClient(served.grpc)
    try:
        with model_busy(triton, markers, 1.5):
            queued: queue.Queue[Any] = queue.Queue()
            triton.async_infer("sleeper", [seconds(0.0)], lambda result, error: queued.put(error))
            give_up = time.monotonic() + 30
            while queue_depth(served.rest) < 1:  # max_queue is 1: the next one is refused
                assert time.monotonic() < give_up, "the second request never queued"
                time.sleep(0.01)
            with pytest.raises(InferenceServerException) as info:
                triton.infer("sleeper", [seconds(0.0)])
            assert code_of(info) == "StatusCode.RESOURCE_EXHAUSTED"
            assert "overloaded" in info.value.message()
        assert queued.get(timeout=30) is None  # the queued one was answered once the model freed up
    finally:
        triton.close()


def test_sigterm_lets_a_running_grpc_call_finish_then_exits_cleanly(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    argv = [sys.executable, "-m", "modelyard.cli.main", "serve", SLEEPER, "--port", "0", "--grpc-port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MODELYARD_TEST_MARKERS": str(markers)}
    server = AnnouncedProcess(argv, tmp_path / "server-stderr.txt", cwd=ROOT, env=env)
    try:
        server.wait_until_serving(timeout=60)
        server.component = "grpc"
        triton = grpcclient.InferenceServerClient(
            server.wait_until_serving(timeout=30).removeprefix("http://")
        )
        try:
            with model_busy(triton, markers, 1.0):
                server.proc.send_signal(signal.SIGTERM)  # mid-call: the answer must still come
            assert server.proc.wait(timeout=30) == 0
        finally:
            triton.close()
    finally:
        server.proc.kill()
        server.proc.wait(timeout=30)
