"""ModelRuntime: hooks (sync and async), per-request pre/postprocess, states and batching choices."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

import modelyard
from modelyard import BatchSpec, ModelMetadata, TensorSpec
from modelyard.errors import DeadlineExceeded, ModelError, ModelNotReady
from modelyard.server import ModelRuntime, ModelState, RuntimeOptions, Settings
from modelyard.server.app import build_app
from tests import models

pytestmark = pytest.mark.anyio

Log = list[tuple[str, int]]

REFINED_INPUTS = (TensorSpec("x", "FP32", [-1, 2]),)


@modelyard.model(name="sync_hooks", version="2", labels={"owner": "spec"})
class SyncHooks:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.log.append(("init", threading.get_ident()))

    def load(self) -> None:
        self.log.append(("load", threading.get_ident()))

    def metadata(self) -> ModelMetadata:
        self.log.append(("metadata", threading.get_ident()))
        return ModelMetadata(
            name="ignored", version="99", inputs=REFINED_INPUTS, labels={"owner": "hook", "extra": "yes"}
        )

    def warmup(self) -> None:
        self.log.append(("warmup", threading.get_ident()))

    def preprocess(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.log.append(("preprocess", threading.get_ident()))
        return inputs["x"] + 1

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.log.append(("predict", threading.get_ident()))
        return x * 10

    def postprocess(self, y: np.ndarray) -> dict[str, np.ndarray]:
        self.log.append(("postprocess", threading.get_ident()))
        return {"y": y - 1}

    def health(self) -> bool:
        self.log.append(("health", threading.get_ident()))
        return True


@modelyard.model(name="async_hooks")
class AsyncHooks:
    def __init__(self, log: Log) -> None:
        self.log = log

    async def load(self) -> None:
        await asyncio.sleep(0)
        self.log.append(("load", threading.get_ident()))

    async def metadata(self) -> None:
        self.log.append(("metadata", threading.get_ident()))

    async def warmup(self) -> None:
        self.log.append(("warmup", threading.get_ident()))

    async def preprocess(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.log.append(("preprocess", threading.get_ident()))
        return inputs["x"] + 1

    async def predict(self, x: np.ndarray) -> np.ndarray:
        await asyncio.sleep(0)
        self.log.append(("predict", threading.get_ident()))
        return x * 10

    async def postprocess(self, y: np.ndarray) -> dict[str, np.ndarray]:
        self.log.append(("postprocess", threading.get_ident()))
        return {"y": y - 1}

    async def health(self) -> bool:
        self.log.append(("health", threading.get_ident()))
        return True


HOOK_ORDER = ["load", "metadata", "warmup", "preprocess", "predict", "postprocess", "health"]


async def run_all_hooks(runtime: ModelRuntime) -> Any:
    await runtime.load()
    assert runtime.state is ModelState.READY
    result = await runtime.infer({"x": np.array([[1.0, 2.0]], dtype=np.float32)})
    assert await runtime.check_health(timeout_s=5) is True
    await runtime.unload()
    return result


async def test_sync_hooks_are_all_called_in_worker_threads() -> None:
    log: Log = []
    runtime = ModelRuntime(SyncHooks.replace(init_kwargs={"log": log}))
    result = await run_all_hooks(runtime)
    np.testing.assert_array_equal(result["y"], [[19.0, 29.0]])
    assert [hook for hook, _ in log] == ["init", *HOOK_ORDER]
    loop_thread = threading.get_ident()
    assert all(thread != loop_thread for _, thread in log), log


async def test_async_hooks_are_all_awaited_on_the_event_loop() -> None:
    log: Log = []
    runtime = ModelRuntime(AsyncHooks.replace(init_kwargs={"log": log}))
    result = await run_all_hooks(runtime)
    np.testing.assert_array_equal(result["y"], [[19.0, 29.0]])
    assert [hook for hook, _ in log] == HOOK_ORDER
    loop_thread = threading.get_ident()
    assert all(thread == loop_thread for _, thread in log), log


async def test_a_slow_sync_hook_does_not_block_the_event_loop() -> None:
    runtime = ModelRuntime(models.Slow)
    await runtime.load()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    await runtime.infer({"seconds": np.array([0.3])})
    ticker.cancel()
    await runtime.unload()
    assert ticks >= 10  # the loop kept turning while predict slept in a thread


async def test_unbatched_sync_model_runs_requests_side_by_side() -> None:
    runtime = ModelRuntime(models.Slow, RuntimeOptions(workers=3))
    await runtime.load()
    started = time.monotonic()
    results = await asyncio.gather(*(runtime.infer({"seconds": np.array([0.4])}) for _ in range(3)))
    elapsed = time.monotonic() - started
    await runtime.unload()
    assert elapsed < 1.0  # serially: 1.2 s
    assert len({int(r[0]) for r in results}) == 3  # three different worker threads


@modelyard.model(name="counting")
class Counting:
    """List-mode batching: preprocess and postprocess must run once per request, outside the batch."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def preprocess(self, inputs: dict[str, np.ndarray]) -> float:
        self.log.append("preprocess")
        return float(inputs["x"].sum())

    @modelyard.batch(max_batch_size=3, max_latency_ms=5000)
    def predict(self, totals: list[float]) -> list[float]:
        self.log.append(("predict", list(totals)))
        return [t * 2 for t in totals]

    def postprocess(self, total: float) -> dict[str, np.ndarray]:
        self.log.append("postprocess")
        return {"total": np.array([total])}


async def test_preprocess_and_postprocess_run_per_request_around_one_batch() -> None:
    log: list[Any] = []
    batches: list[int] = []
    runtime = ModelRuntime(
        Counting.replace(init_kwargs={"log": log}), on_batch=lambda n, v, rows, s: batches.append(rows)
    )
    await runtime.load()
    results = await asyncio.wait_for(
        asyncio.gather(*(runtime.infer({"x": np.array([float(i)])}) for i in (1, 2, 3))), 10
    )
    await runtime.unload()
    assert [float(r["total"][0]) for r in results] == [2.0, 4.0, 6.0]
    assert log.count("preprocess") == 3
    assert log.count("postprocess") == 3
    predicts = [entry for entry in log if isinstance(entry, tuple)]
    assert len(predicts) == 1
    assert sorted(predicts[0][1]) == [1.0, 2.0, 3.0]
    assert batches == [3]


@modelyard.model(name="stacker", inputs=[TensorSpec("x", "FP32", [-1, 2])])
class Stacker:
    def __init__(self, shapes: list[tuple[int, ...]], fixed_rows: int | None = None) -> None:
        self.shapes = shapes
        self.fixed_rows = fixed_rows

    @modelyard.batch(max_batch_size=8, max_latency_ms=5000, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.shapes.append(x.shape)
        if self.fixed_rows is not None:
            x = x[: self.fixed_rows]
        return {"y": x.sum(axis=1)}


async def test_stacked_requests_are_concatenated_and_split_back() -> None:
    shapes: list[tuple[int, ...]] = []
    runtime = ModelRuntime(Stacker.replace(init_kwargs={"shapes": shapes}))
    await runtime.load()
    a = np.ones((3, 2), dtype=np.float32)
    b = np.full((5, 2), 2, dtype=np.float32)
    results = await asyncio.wait_for(asyncio.gather(runtime.infer({"x": a}), runtime.infer({"x": b})), 10)
    await runtime.unload()
    assert shapes == [(8, 2)]  # 3 + 5 rows fill the batch of 8: one call
    np.testing.assert_array_equal(results[0]["y"], [2.0] * 3)
    np.testing.assert_array_equal(results[1]["y"], [4.0] * 5)


async def test_stacked_predict_with_the_wrong_row_count_fails_even_when_alone() -> None:
    runtime = ModelRuntime(
        Stacker.replace(init_kwargs={"shapes": [], "fixed_rows": 1}, batching=BatchSpec(8, 0, stack=True))
    )
    await runtime.load()
    with pytest.raises(ValueError, match="got a batch of 3 rows but its output 'y' has 1 rows"):
        await runtime.infer({"x": np.ones((3, 2), dtype=np.float32)})
    await runtime.unload()


async def test_stacking_is_disabled_when_an_input_has_a_fixed_first_dimension() -> None:
    shapes: list[tuple[int, ...]] = []
    fixed = Stacker.replace(init_kwargs={"shapes": shapes})
    fixed = fixed.replace(
        metadata=ModelMetadata(name="fixed", inputs=(TensorSpec("x", "FP32", [2, 2]),)),
    )
    runtime = ModelRuntime(fixed)
    await runtime.load()
    item = np.ones((2, 2), dtype=np.float32)
    await asyncio.wait_for(asyncio.gather(runtime.infer({"x": item}), runtime.infer({"x": item})), 10)
    await runtime.unload()
    assert shapes == [(2, 2), (2, 2)]  # each request alone, never concatenated to (4, 2)


@modelyard.model(name="refined_fixed")
class RefinedFixed:
    """Declares nothing; its metadata hook reveals a fixed first dimension once loaded."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(name="refined_fixed", inputs=(TensorSpec("x", "FP32", [1, 2]),))

    @modelyard.batch(max_batch_size=8, max_latency_ms=5000, stack=True)
    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([inputs["x"].shape[0]])


async def test_stacking_is_disabled_by_the_refined_signature_too() -> None:
    runtime = ModelRuntime(RefinedFixed)
    await runtime.load()
    item = {"x": np.ones((1, 2), dtype=np.float32)}
    started = time.monotonic()
    results = await asyncio.wait_for(asyncio.gather(runtime.infer(item), runtime.infer(item)), 10)
    await runtime.unload()
    assert [int(r[0]) for r in results] == [1, 1]  # each call saw its own row only
    assert time.monotonic() - started < 3.0  # plain dispatch: no 5 s wait for batch-mates


async def test_metadata_hook_refines_the_signature_but_name_and_version_stay() -> None:
    runtime = ModelRuntime(SyncHooks.replace(init_kwargs={"log": []}))
    assert runtime.metadata.inputs == ()
    await runtime.load()
    meta = runtime.metadata
    assert (meta.name, meta.version) == ("sync_hooks", "2")
    assert (runtime.name, runtime.version) == ("sync_hooks", "2")
    assert meta.inputs == REFINED_INPUTS
    assert dict(meta.labels) == {"owner": "spec", "extra": "yes"}  # declared labels win
    await runtime.unload()


@modelyard.model(name="broken_load")
class BrokenLoad:
    def load(self) -> None:
        raise OSError("weights.bin: no such file")

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros(1)


async def test_load_failure_leaves_the_model_failed_with_its_reason() -> None:
    runtime = ModelRuntime(BrokenLoad)
    with pytest.raises(ModelError, match=r"model 'broken_load' failed in load: OSError: weights\.bin"):
        await runtime.load()
    assert runtime.state is ModelState.FAILED
    assert "weights.bin: no such file" in runtime.reason
    assert not runtime.ready
    assert await runtime.check_health(timeout_s=5) is False
    assert runtime.healthy is False
    with pytest.raises(ModelNotReady, match=r"model 'broken_load' is not ready \(state: FAILED\)"):
        await runtime.infer({"x": np.zeros(1)})


async def test_constructor_failure_also_leaves_the_model_failed() -> None:
    runtime = ModelRuntime(SyncHooks)  # no init_kwargs: __init__ misses its argument
    with pytest.raises(TypeError):
        await runtime.load()
    assert runtime.state is ModelState.FAILED
    assert "log" in runtime.reason


async def test_warmup_failure_means_never_ready_and_nothing_left_running() -> None:
    before = len(asyncio.all_tasks())
    runtime = ModelRuntime(models.Unwell)
    with pytest.raises(ModelError, match="failed in warmup: RuntimeError: weights are corrupt"):
        await runtime.load()
    assert runtime.state is ModelState.FAILED
    assert runtime.reason.endswith("weights are corrupt")
    with pytest.raises(ModelNotReady):
        await runtime.infer({"x": np.zeros(1)})
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before  # no batcher workers left behind
    await runtime.unload()
    assert runtime.state is ModelState.UNLOADED


@modelyard.model(name="moody")
class Moody:
    def __init__(self, verdict: Any) -> None:
        self.verdict = verdict

    def health(self) -> bool:
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return bool(self.verdict)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros(1)


@pytest.mark.parametrize(("verdict", "healthy"), [(True, True), (False, False), (RuntimeError("gpu"), False)])
async def test_health_hook_decides_healthy(verdict: Any, healthy: bool) -> None:
    runtime = ModelRuntime(Moody.replace(init_kwargs={"verdict": verdict}))
    await runtime.load()
    assert runtime.ready  # loaded fine: health is a separate, later verdict
    assert runtime.healthy is True  # no verdict before the first check
    assert await runtime.check_health(timeout_s=5) is healthy
    assert runtime.healthy is healthy
    await runtime.unload()
    assert runtime.healthy is False
    assert await runtime.check_health(timeout_s=5) is False


def test_unhealthy_model_ready_endpoint_is_503() -> None:
    sick = Moody.replace(name="sick", init_kwargs={"verdict": False})
    well = Moody.replace(name="well", init_kwargs={"verdict": True})
    with TestClient(build_app(Settings(), [sick, well])) as client:
        response = client.get("/v2/models/sick/ready")
        assert response.status_code == 503
        assert response.json() == {"name": "sick", "ready": False}
        assert client.get("/v2/models/well/ready").status_code == 200
        assert client.get("/v2/models/well/versions/1/ready").status_code == 200


async def test_unload_then_load_again_serves_with_a_fresh_instance() -> None:
    log: Log = []
    runtime = ModelRuntime(SyncHooks.replace(init_kwargs={"log": log}))
    x = {"x": np.array([[0.0, 1.0]], dtype=np.float32)}
    await runtime.load()
    first = await runtime.infer(x)
    await runtime.unload()
    assert runtime.state is ModelState.UNLOADED
    with pytest.raises(ModelNotReady, match="UNLOADED"):
        await runtime.infer(x)
    await runtime.load()
    assert runtime.state is ModelState.READY
    second = await runtime.infer(x)
    await runtime.unload()
    np.testing.assert_array_equal(first["y"], second["y"])
    assert [hook for hook, _ in log].count("init") == 2
    assert [hook for hook, _ in log].count("load") == 2


async def test_unload_lets_a_running_request_finish() -> None:
    runtime = ModelRuntime(models.Slow)
    await runtime.load()
    request = asyncio.ensure_future(runtime.infer({"seconds": np.array([0.3])}))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(runtime.unload(), 5)
    result = await asyncio.wait_for(request, 5)
    assert result.dtype == np.int64


async def test_request_deadline_from_options_and_per_call() -> None:
    runtime = ModelRuntime(models.Slow, RuntimeOptions(timeout_s=0.1))
    await runtime.load()
    with pytest.raises(DeadlineExceeded, match=r"within 0\.1 s"):
        await runtime.infer({"seconds": np.array([0.5])})
    with pytest.raises(DeadlineExceeded, match=r"within 0\.05 s"):
        await runtime.infer({"seconds": np.array([0.5])}, timeout_s=0.05)
    assert (await runtime.infer({"seconds": np.array([0.0])}, timeout_s=5)).shape == (1,)
    await runtime.unload()


async def test_model_errors_name_the_model_and_hook_and_fail_alone() -> None:
    runtime = ModelRuntime(models.Picky)
    await runtime.load()
    good = runtime.infer({"x": np.array([[1.0]], dtype=np.float32)})
    bad = runtime.infer({"x": np.array([[-1.0]], dtype=np.float32)})
    results = await asyncio.wait_for(asyncio.gather(good, bad, return_exceptions=True), 10)
    await runtime.unload()
    np.testing.assert_array_equal(results[0]["y"], [[2.0]])
    assert isinstance(results[1], ModelError)
    assert str(results[1]) == "model 'picky' failed in predict: ValueError: negative values are not allowed"
