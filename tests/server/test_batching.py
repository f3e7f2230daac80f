"""The adaptive batcher, driven directly with small async runners (no model, no HTTP).

Timing assertions use generous bounds: lower bounds are what the policy guarantees (a lone item is
never dispatched before its latency budget), upper bounds are loose enough for a busy CI machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from modelyard.errors import DeadlineExceeded, ErrorKind, ModelNotReady, Overloaded
from modelyard.sdk import BatchSpec
from modelyard.server.batcher import Batcher

pytestmark = pytest.mark.anyio


class Runner:
    """A batch runner that records every call; optionally waits on a gate before answering."""

    def __init__(self, fn: Callable[[Any], Any] = lambda x: x * 2, gated: bool = False) -> None:
        self.fn = fn
        self.calls: list[list[Any]] = []
        self.started: list[float] = []
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()

    async def __call__(self, items: list[Any]) -> Sequence[Any]:
        self.calls.append(list(items))
        self.started.append(time.monotonic())
        await self.gate.wait()
        return [self.fn(item) for item in items]


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def make(runner: Runner, max_batch_size: int, max_latency_ms: float, **kwargs: Any) -> Batcher:
    batcher = Batcher("m", runner, BatchSpec(max_batch_size, max_latency_ms), **kwargs)
    batcher.start()
    return batcher


async def test_concurrent_submits_coalesce_into_full_batches_without_waiting() -> None:
    runner = Runner()
    batcher = make(runner, max_batch_size=4, max_latency_ms=2000)
    started = time.monotonic()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
    elapsed = time.monotonic() - started
    await batcher.stop()
    assert results == [i * 2 for i in range(8)]
    assert runner.calls == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert elapsed < 1.5  # full batches never wait for the 2 s latency budget


async def test_lone_item_waits_for_max_latency_then_runs_alone() -> None:
    runner = Runner()
    batcher = make(runner, max_batch_size=8, max_latency_ms=400)
    submitted = time.monotonic()
    task = asyncio.ensure_future(batcher.submit(21))
    await asyncio.sleep(0.2)
    assert runner.calls == []  # still waiting for batch-mates
    assert batcher.depth == 1
    assert await asyncio.wait_for(task, 5) == 42
    await batcher.stop()
    assert runner.calls == [[21]]
    waited = runner.started[0] - submitted
    assert 0.38 <= waited < 3.0


async def test_zero_latency_dispatches_at_once() -> None:
    runner = Runner()
    batcher = make(runner, max_batch_size=64, max_latency_ms=0)
    started = time.monotonic()
    assert await batcher.submit(1) == 2
    assert time.monotonic() - started < 1.0
    await batcher.stop()


async def test_by_default_a_lone_item_never_waits_and_batches_form_while_the_model_is_busy() -> None:
    assert BatchSpec().max_latency_ms == 0  # work-conserving unless a window is asked for
    runner = Runner(gated=True)
    batcher = Batcher("m", runner, BatchSpec(max_batch_size=8))  # the default window
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(1))
    await wait_until(lambda: len(runner.started) == 1, within=1.0)  # alone, no batch-mate to come
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]  # while the model is busy
    await asyncio.sleep(0.05)
    runner.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    await batcher.stop()
    assert runner.calls == [[1], [2, 3, 4]]


async def test_items_queued_while_a_batch_runs_form_the_next_batch_immediately() -> None:
    # Latency is counted from the oldest queued item, not from when the model frees up.
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=2, max_latency_ms=600)
    first = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await wait_until(lambda: len(runner.calls) == 1)
    later = asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0.8)  # longer than the latency budget: item 3 has waited enough
    assert runner.calls == [[1, 2]]  # one batch at a time: 3 waits for the model
    released = time.monotonic()
    runner.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*first, later), 5) == [2, 4, 6]
    await batcher.stop()
    assert runner.calls == [[1, 2], [3]]
    # Dispatched as soon as the model was free, not after a second 600 ms wait.
    assert runner.started[1] - released < 0.4


async def test_items_that_fill_a_batch_while_the_model_runs_go_next_together() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=3, max_latency_ms=300)
    first = asyncio.ensure_future(batcher.submit(0))
    more = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await wait_until(lambda: len(runner.calls) == 1)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in (3, 4, 5, 6)]
    await asyncio.sleep(0.5)  # past the latency budget, yet nothing runs beside the first batch
    assert batcher.depth == 4
    assert len(runner.calls) == 1
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *more, *queued), 10)
    await batcher.stop()
    assert runner.calls == [[0, 1, 2], [3, 4, 5], [6]]


async def test_full_queue_refuses_with_overloaded_and_retry_after() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, max_latency_ms=0, max_queue=2)
    running = asyncio.ensure_future(batcher.submit("a"))
    await wait_until(lambda: len(runner.calls) == 1)
    queued = [asyncio.ensure_future(batcher.submit(x)) for x in ("b", "c")]
    await asyncio.sleep(0.01)
    assert batcher.depth == 2
    with pytest.raises(Overloaded) as info:
        await batcher.submit("d")
    assert info.value.kind is ErrorKind.OVERLOADED
    assert info.value.retry_after > 0
    assert "2 requests already queued" in str(info.value)
    runner.gate.set()
    assert await asyncio.wait_for(asyncio.gather(running, *queued), 5) == ["aa", "bb", "cc"]
    assert ["d"] not in runner.calls
    # Once the queue drained, submit works again.
    assert await batcher.submit("e") == "ee"
    await batcher.stop()


async def test_expired_item_fails_with_deadline_exceeded_and_never_reaches_the_runner() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, max_latency_ms=0)
    running = asyncio.ensure_future(batcher.submit("a"))
    await wait_until(lambda: len(runner.calls) == 1)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"request to model 'm' did not complete within 0\.1 s"):
        await batcher.submit("late", timeout_s=0.1)
    assert 0.09 <= time.monotonic() - started < 3.0
    runner.gate.set()
    assert await running == "aa"
    assert await batcher.submit("b", timeout_s=5) == "bb"
    await batcher.stop()
    assert runner.calls == [["a"], ["b"]]


async def test_deadline_shorter_than_the_batch_wait_never_runs_the_item() -> None:
    runner = Runner()
    batcher = make(runner, max_batch_size=8, max_latency_ms=300)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit("x", timeout_s=0.05)
    await asyncio.sleep(0.5)  # past the latency budget: the collector has taken (and dropped) it
    assert runner.calls == []
    assert batcher.depth == 0
    await batcher.stop()


async def test_a_poisoned_item_fails_alone() -> None:
    async def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        bad = [i for i in items if i < 0]
        if bad:
            raise ValueError(f"negative values: {bad}")
        return [i * 10 for i in items]

    calls: list[list[int]] = []
    batcher = Batcher("m", run, BatchSpec(8, 1000))
    batcher.start()
    values = [1, 2, -3, 4, 5, 6, -7, 8]
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(v) for v in values), return_exceptions=True), 5
    )
    await batcher.stop()
    assert calls[0] == values  # tried as one batch first
    for value, result in zip(values, results, strict=True):
        if value < 0:
            assert isinstance(result, ValueError)
            assert str(result) == f"negative values: [{value}]"  # its own failure, alone
        else:
            assert result == value * 10
    assert [c for c in calls if len(c) == 1 and c[0] < 0] == [[-3], [-7]]


async def test_runner_returning_exceptions_fails_only_those_items() -> None:
    async def run(items: list[int]) -> list[Any]:
        return [KeyError(i) if i == 2 else i for i in items]

    batcher = Batcher("m", run, BatchSpec(4, 1000))
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    await batcher.stop()
    assert results[:2] == [0, 1]
    assert isinstance(results[2], KeyError)
    assert results[3] == 3


async def test_wrong_number_of_results_fails_every_item_naming_both_lengths() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = Batcher("m", run, BatchSpec(3, 1000))
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    await batcher.stop()
    for result in results:
        assert isinstance(result, RuntimeError)
        assert "got 3 items but returned 2 results" in str(result)


async def test_stop_fails_queued_items_and_finishes_the_running_batch() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, max_latency_ms=0)
    running = asyncio.ensure_future(batcher.submit("a"))
    await wait_until(lambda: len(runner.calls) == 1)
    queued = [asyncio.ensure_future(batcher.submit(x)) for x in ("b", "c")]
    await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(batcher.stop())
    for future in queued:
        with pytest.raises(ModelNotReady, match=r"model 'm' is not ready \(state: unloading\)"):
            await asyncio.wait_for(future, 5)
    runner.gate.set()
    # The batch that was already running completes for its caller instead of hanging.
    assert await asyncio.wait_for(running, 5) == "aa"
    await asyncio.wait_for(stopping, 5)
    assert runner.calls == [["a"]]
    with pytest.raises(ModelNotReady):
        await batcher.submit("d")


async def test_stop_returns_promptly_from_an_idle_or_waiting_collector() -> None:
    idle = make(Runner(), max_batch_size=4, max_latency_ms=0)
    assert await idle.submit(1, timeout_s=5) == 2
    await asyncio.wait_for(idle.stop(), 2)

    runner = Runner()
    waiting = make(runner, max_batch_size=4, max_latency_ms=5000)
    lone = asyncio.ensure_future(waiting.submit(1))
    await asyncio.sleep(0.05)  # the collector now waits up to 5 s for batch-mates
    started = time.monotonic()
    await asyncio.wait_for(waiting.stop(), 2)
    assert time.monotonic() - started < 1.0
    with pytest.raises(ModelNotReady):
        await lone
    assert runner.calls == []


async def test_stacked_rows_count_toward_max_batch_size() -> None:
    runner = Runner(fn=lambda item: item)
    seen: list[int] = []
    batcher = make(runner, max_batch_size=4, max_latency_ms=2000, on_batch=lambda rows, s: seen.append(rows))
    started = time.monotonic()
    # 3 rows + 1 row fill the batch of 4: dispatched at once, together.
    assert await asyncio.gather(batcher.submit("3rows", rows=3), batcher.submit("1row", rows=1)) == [
        "3rows",
        "1row",
    ]
    assert time.monotonic() - started < 1.5
    assert runner.calls == [["3rows", "1row"]]
    assert seen == [4]
    await batcher.stop()


async def test_an_item_that_would_overflow_the_batch_waits_for_the_next_one() -> None:
    runner = Runner(fn=lambda item: item)
    batcher = make(runner, max_batch_size=4, max_latency_ms=100)
    await asyncio.gather(batcher.submit("a3", rows=3), batcher.submit("b2", rows=2))
    await batcher.stop()
    assert runner.calls == [["a3"], ["b2"]]  # 3 + 2 > 4


async def test_an_oversized_item_runs_alone() -> None:
    runner = Runner(fn=lambda item: item)
    seen: list[int] = []
    batcher = make(runner, max_batch_size=4, max_latency_ms=100, on_batch=lambda rows, s: seen.append(rows))
    results = await asyncio.gather(
        batcher.submit("small", rows=1), batcher.submit("huge", rows=10), batcher.submit("tail", rows=1)
    )
    await batcher.stop()
    assert results == ["small", "huge", "tail"]
    assert runner.calls == [["small"], ["huge"], ["tail"]]
    assert seen == [1, 10, 1]


async def test_concurrency_runs_several_single_item_batches_at_once() -> None:
    async def run(items: list[float]) -> list[float]:
        await asyncio.sleep(items[0])
        return items

    batcher = Batcher("m", run, BatchSpec(1, 0), concurrency=3)
    batcher.start()
    started = time.monotonic()
    assert await asyncio.gather(*(batcher.submit(0.4) for _ in range(3))) == [0.4] * 3
    assert time.monotonic() - started < 1.0  # serially it would take 1.2 s
    await batcher.stop()


async def test_a_cancelled_caller_is_not_run() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, max_latency_ms=0)
    running = asyncio.ensure_future(batcher.submit("a"))
    await wait_until(lambda: len(runner.calls) == 1)
    abandoned = asyncio.ensure_future(batcher.submit("gone"))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    runner.gate.set()
    assert await running == "aa"
    assert await batcher.submit("b") == "bb"
    await batcher.stop()
    assert runner.calls == [["a"], ["b"]]


async def test_stop_cancels_a_batch_still_running_after_its_timeout_and_fails_its_callers() -> None:
    runner = Runner(gated=True)  # never released: a hung model
    batcher = make(runner, max_batch_size=2, max_latency_ms=0)
    running = asyncio.ensure_future(batcher.submit("a"))
    await wait_until(lambda: len(runner.calls) == 1)
    started = time.monotonic()
    await asyncio.wait_for(batcher.stop(timeout_s=0.2), 5)
    assert 0.15 <= time.monotonic() - started < 2.0
    with pytest.raises(ModelNotReady, match="unloading"):
        await asyncio.wait_for(running, 1)


async def test_expired_and_cancelled_items_leave_the_queue_at_once() -> None:
    runner = Runner(lambda x: x, gated=True)
    batcher = make(runner, max_batch_size=1, max_latency_ms=0, max_queue=2)
    try:
        running = asyncio.ensure_future(batcher.submit(0))
        await wait_until(lambda: len(runner.calls) == 1)  # the model is busy with item 0
        expiring = asyncio.ensure_future(batcher.submit(1, timeout_s=0.05))
        cancelled = asyncio.ensure_future(batcher.submit(2))
        await wait_until(lambda: batcher.depth == 2)
        cancelled.cancel()
        with pytest.raises(DeadlineExceeded):
            await expiring
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert batcher.depth == 0
        # Both places are free again: two new items queue without an Overloaded.
        later = [asyncio.ensure_future(batcher.submit(v)) for v in (3, 4)]
        await wait_until(lambda: batcher.depth == 2)
        runner.gate.set()
        assert await asyncio.gather(running, *later) == [0, 3, 4]
        assert runner.calls == [[0], [3], [4]]
    finally:
        runner.gate.set()
        await batcher.stop()
