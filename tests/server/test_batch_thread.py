"""ThreadBatcher: the batcher whose collector runs in the model's thread keeps Batcher's guarantees."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from modelyard.errors import DeadlineExceeded, ModelNotReady, Overloaded
from modelyard.sdk import BatchSpec
from modelyard.server.batch_thread import ThreadBatcher

pytestmark = pytest.mark.anyio


class Runner:
    """A synchronous batch runner that records every call; optionally waits on a gate."""

    def __init__(self, fn: Callable[[Any], Any] = lambda x: x * 2, gated: bool = False) -> None:
        self.fn = fn
        self.calls: list[list[Any]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.running = threading.Semaphore(0)  # released once per call, when it starts
        if not gated:
            self.gate.set()

    def __call__(self, items: list[Any]) -> Sequence[Any]:
        self.calls.append(list(items))
        self.threads.add(threading.current_thread().name)
        self.running.release()
        self.gate.wait(10)
        return [self.fn(item) for item in items]


def make(runner: Runner, max_batch_size: int = 8, max_latency_ms: float = 0, **kwargs: Any) -> ThreadBatcher:
    batcher = ThreadBatcher("m", runner, BatchSpec(max_batch_size, max_latency_ms), **kwargs)
    batcher.start()
    return batcher


async def started(runner: Runner, calls: int = 1) -> None:
    """Wait until ``calls`` more calls of the runner have begun."""
    for _ in range(calls):
        assert await asyncio.get_running_loop().run_in_executor(None, runner.running.acquire, True, 5)


async def test_concurrent_submits_coalesce_and_run_in_the_model_thread() -> None:
    runner = Runner()
    batcher = make(runner, max_batch_size=4, max_latency_ms=2000)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
    await batcher.stop()
    assert results == [i * 2 for i in range(8)]
    assert runner.calls == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert runner.threads == {"model-m-0"}


async def test_a_lone_item_goes_at_once_and_batches_form_while_the_model_is_busy() -> None:
    runner = Runner(gated=True)
    batcher = make(runner)
    first = asyncio.ensure_future(batcher.submit(1))
    await started(runner)  # alone: no window to wait out
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.05)
    assert batcher.depth == 3
    runner.gate.set()
    assert await asyncio.gather(first, *rest) == [2, 4, 6, 8]
    await batcher.stop()
    assert runner.calls == [[1], [2, 3, 4]]


async def test_a_window_holds_a_lone_item_until_the_oldest_has_waited_it() -> None:
    runner = Runner()
    batcher = make(runner, max_latency_ms=300)
    submitted = time.monotonic()
    task = asyncio.ensure_future(batcher.submit(5))
    await asyncio.sleep(0.1)
    assert runner.calls == []
    assert await task == 10
    assert time.monotonic() - submitted >= 0.29
    await batcher.stop()


async def test_a_full_queue_refuses_with_overloaded() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, max_queue=2)
    running = asyncio.ensure_future(batcher.submit(0))
    await started(runner)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.02)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(3)
    assert info.value.retry_after == 1.0
    runner.gate.set()
    assert await asyncio.gather(running, *queued) == [0, 2, 4]
    await batcher.stop()


async def test_an_item_whose_deadline_passes_while_queued_never_reaches_the_model() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1)
    running = asyncio.ensure_future(batcher.submit(0))
    await started(runner)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(1, timeout_s=0.05)
    assert batcher.depth == 0  # it left the queue at once
    runner.gate.set()
    assert await running == 0
    await batcher.stop()
    assert runner.calls == [[0]]


async def test_a_cancelled_caller_is_not_run() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1)
    running = asyncio.ensure_future(batcher.submit(0))
    await started(runner)
    gone = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.02)
    gone.cancel()
    await asyncio.sleep(0.02)
    runner.gate.set()
    await running
    await batcher.stop()
    assert runner.calls == [[0]]


class Loud:
    """An item that counts how often it is printed (a request's arrays take milliseconds)."""

    def __init__(self) -> None:
        self.printed = 0

    def __repr__(self) -> str:
        self.printed += 1
        return "Loud()"

    def __mul__(self, other: int) -> Loud:
        return self


async def test_a_caller_that_goes_away_after_its_batch_started_costs_no_printing() -> None:
    runner = Runner(gated=True)
    batcher = make(runner)
    item = Loud()
    gone = asyncio.ensure_future(batcher.submit(item))
    await started(runner)  # the model thread has taken it: no longer in the queue
    gone.cancel()
    await asyncio.sleep(0.02)
    runner.gate.set()
    await batcher.stop()
    assert runner.calls == [[item]]
    assert item.printed == 0


async def test_a_poisoned_item_fails_alone_and_wrong_lengths_fail_every_item() -> None:
    def poisoned(x: Any) -> Any:
        if x == 3:
            raise ValueError("bad item")
        return x * 2

    batcher = make(Runner(poisoned))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
    await batcher.stop()
    assert [r for r in results if isinstance(r, ValueError)] == [results[3]]
    assert [r for i, r in enumerate(results) if i != 3] == [0, 2, 4, 8, 10]

    short = ThreadBatcher("m", lambda items: items[:1], BatchSpec(8, 0))
    short.start()
    answers = await asyncio.gather(*(short.submit(i) for i in range(3)), return_exceptions=True)
    await short.stop()
    assert len(answers) == 3
    assert all("got 3 items but returned 1 results" in str(a) for a in answers)


async def test_stop_fails_queued_items_and_waits_for_the_running_batch() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1)
    running = asyncio.ensure_future(batcher.submit(0))
    await started(runner)
    queued = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.02)
    stopping = asyncio.ensure_future(batcher.stop())
    with pytest.raises(ModelNotReady):
        await queued
    assert not stopping.done()
    runner.gate.set()
    await stopping
    assert await running == 0
    with pytest.raises(ModelNotReady):
        await batcher.submit(2)


async def test_stop_fails_the_callers_of_a_batch_still_running_after_its_timeout() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=2)
    running = asyncio.ensure_future(batcher.submit(0))
    await started(runner)
    await batcher.stop(timeout_s=0.1)
    with pytest.raises(ModelNotReady):
        await running
    runner.gate.set()


async def test_several_threads_run_several_batches_at_once() -> None:
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=1, threads=3)
    tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await started(runner, calls=3)  # three at once, though the gate holds every one
    runner.gate.set()
    assert sorted(await asyncio.gather(*tasks)) == [0, 2, 4]
    await batcher.stop()
    assert len(runner.threads) == 3


async def test_stacked_rows_count_toward_the_limit_and_each_batch_is_reported() -> None:
    seen: list[int] = []
    runner = Runner(gated=True)
    batcher = make(runner, max_batch_size=4, on_batch=lambda rows, seconds: seen.append(rows))
    first = asyncio.ensure_future(batcher.submit(0, rows=1))
    await started(runner)
    rest = [asyncio.ensure_future(batcher.submit(i, rows=2)) for i in (1, 2, 3)]
    await asyncio.sleep(0.02)
    runner.gate.set()
    await asyncio.gather(first, *rest)
    await batcher.stop()
    assert runner.calls == [[0], [1, 2], [3]]
    assert seen == [1, 4, 2]
