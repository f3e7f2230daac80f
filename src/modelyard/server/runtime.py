"""One loaded model version: its instance, its hooks, its batcher and its state."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from modelyard.errors import ModelError, ModelNotReady, ModelyardError
from modelyard.sdk import BatchSpec, ModelMetadata, ModelSpec
from modelyard.server.batch_thread import SyncRunner, ThreadBatcher
from modelyard.server.batcher import Batcher, BatchRunner
from modelyard.server.health import HealthVerdict
from modelyard.server.stacking import count_rows, split_rows, stack_items

__all__ = ["ModelRuntime", "ModelState", "RuntimeOptions"]

log = logging.getLogger("modelyard.server")


class ModelState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"
    UNLOADED = "UNLOADED"


class RuntimeOptions:
    """Per-model serving limits, taken from :class:`~modelyard.server.settings.Settings`."""

    def __init__(self, max_queue: int = 1024, workers: int = 4, timeout_s: float | None = 30.0) -> None:
        self.max_queue = max_queue
        self.workers = workers
        self.timeout_s = timeout_s


class ModelRuntime:
    """Serve one :class:`ModelSpec`: load it, warm it up, and run requests through its hooks.

    Sync hooks run in this model's own thread pool, so a slow model never blocks the event loop
    or starves another model; ``health`` is the exception: it runs in a thread of its own
    (:mod:`modelyard.server.health`), so a hung health check never holds a predict worker.
    """

    def __init__(
        self,
        spec: ModelSpec,
        options: RuntimeOptions | None = None,
        on_batch: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        self.spec = spec
        self.options = options or RuntimeOptions()
        self.metadata: ModelMetadata = spec.metadata
        self.state = ModelState.LOADING
        self.reason = ""
        self._instance: Any = None
        self._batcher: Batcher | ThreadBatcher | None = None
        self._pool = self._new_pool()
        self._on_batch = on_batch
        self._batch_spec: BatchSpec | None = spec.batch_spec
        self._health = HealthVerdict(self._label)
        self.in_flight = 0  # requests between infer() and its answer: queued or computing

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def healthy(self) -> bool:
        """READY, and the last check of the ``health`` hook (if any) said so; never calls the hook."""
        return self.ready and self._health.ok

    @property
    def health_reason(self) -> str:
        """Why the last health check failed; empty when it passed."""
        return self._health.reason

    @property
    def batch_spec(self) -> BatchSpec | None:
        """The batching in force: the spec's, or None once the signature turned batching off."""
        return self._batch_spec

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth if self._batcher is not None else 0

    async def load(self) -> None:
        """Instantiate, run ``load``, refine metadata, run ``warmup``, start the batcher."""
        self.state = ModelState.LOADING
        self._health.discard()
        self._health = HealthVerdict(self._label)  # a fresh instance starts healthy
        try:
            self._instance = await self._in_thread(self.spec.create)
            await self._call_hook("load")
            self._refine_metadata(await self._call_hook("metadata"))
            await self._call_hook("warmup")
            self._start_batcher()  # last: a failed load leaves no batcher workers behind
        except Exception as exc:
            self.state = ModelState.FAILED
            self.reason = str(exc)
            log.error("model %s version %s failed to load: %s", self.name, self.version, exc)
            raise
        self.state = ModelState.READY
        log.info("model %s version %s is ready", self.name, self.version)

    async def unload(self) -> None:
        self.state = ModelState.UNLOADING
        self._health.discard()
        if self._batcher is not None:  # running batches finish; none outlives a request deadline
            await self._batcher.stop(self.options.timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()  # a later load() starts afresh
        self._instance = None
        self._batcher = None
        self.state = ModelState.UNLOADED

    async def check_health(self, timeout_s: float) -> bool:
        """Call the ``health`` hook once, bounded by ``timeout_s``, and remember its verdict.

        Only the data plane's health poller calls this; probes read :attr:`healthy`.
        """
        hook = getattr(self._instance, "health", None)
        if self.ready and callable(hook):
            await self._health.check(hook, timeout_s)
        return self.healthy

    async def infer(self, inputs: Mapping[str, np.ndarray], timeout_s: float | None = None) -> Any:
        """preprocess -> (batched) predict -> postprocess for one request; returns the raw output."""
        if self.state is not ModelState.READY or self._batcher is None:
            raise ModelNotReady(self.name, self.state.value)
        self.in_flight += 1  # only the event loop's thread counts: no lock needed
        try:
            return await self._infer(self._batcher, inputs, timeout_s)
        finally:
            self.in_flight -= 1

    async def _infer(
        self, batcher: Batcher | ThreadBatcher, inputs: Mapping[str, np.ndarray], timeout_s: float | None
    ) -> Any:
        item: Any = dict(inputs)
        if self._has_hook("preprocess"):
            item = await self._call_hook("preprocess", item)
        stack = self._batch_spec is not None and self._batch_spec.stack
        rows = count_rows(item) if stack else 1
        deadline = timeout_s if timeout_s is not None else self.options.timeout_s
        result = await batcher.submit(item, rows, deadline)
        if self._has_hook("postprocess"):
            result = await self._call_hook("postprocess", result)
        return result

    # -- internals ---------------------------------------------------------------------------

    def _refine_metadata(self, refined: object) -> None:
        """Adopt what the ``metadata`` hook says, keeping the served name and version stable."""
        if isinstance(refined, ModelMetadata):
            labels = {**refined.labels, **self.spec.metadata.labels}
            self.metadata = dataclasses.replace(
                refined, name=self.spec.name, version=self.spec.version, labels=labels
            )
        batch = self._batch_spec
        inputs = self.metadata.inputs
        # Stacking concatenates along axis 0, so every input needs a variable batch dimension.
        if batch is not None and batch.stack and inputs and any(s.shape[:1] != (-1,) for s in inputs):
            log.info("model %s: inputs have no variable batch dimension; batching is off", self.name)
            self._batch_spec = None

    @property
    def _label(self) -> str:
        return f"{self.spec.name} version {self.spec.version}"

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max(1, self.options.workers), thread_name_prefix=f"model-{self.spec.name}")

    def _start_batcher(self) -> None:
        spec = self._batch_spec
        # Plain dispatch (no @batch, or batching turned off): one item per call, several at once.
        concurrency = self.options.workers if spec is None else 1
        limits = spec if spec is not None else BatchSpec(1, 0.0)
        if self._predict_is_async:  # the hook runs on the event loop: collect there too
            self._batcher = Batcher(
                self.name, self._async_runner(), limits, max_queue=self.options.max_queue,
                concurrency=concurrency, on_batch=self._record_batch,
            )  # fmt: skip
        else:  # the model's own thread(s) collect, so a batch never waits for the loop to start
            self._batcher = ThreadBatcher(
                self.name, self._sync_runner(), limits, max_queue=self.options.max_queue,
                threads=concurrency, on_batch=self._record_batch,
            )  # fmt: skip
        self._batcher.start()

    def _async_runner(self) -> BatchRunner:
        spec = self._batch_spec
        if spec is None:
            return self._run_single
        return self._run_stacked if spec.stack else self._run_list

    def _sync_runner(self) -> SyncRunner:
        spec = self._batch_spec
        if spec is None:
            return lambda items: [self._predict_sync(items[0])]
        if spec.stack:
            return lambda items: split_rows(
                self._predict_sync(stack_items(items)), [count_rows(item) for item in items]
            )
        return lambda items: _as_list(self._predict_sync(items))

    def _record_batch(self, rows: int, seconds: float) -> None:
        if self._on_batch is not None:
            self._on_batch(self.name, self.version, rows, seconds)

    async def _run_single(self, items: list[Any]) -> Sequence[Any]:
        return [await self._predict(items[0])]

    async def _run_list(self, items: list[Any]) -> Sequence[Any]:
        return _as_list(await self._predict(items))

    async def _run_stacked(self, items: list[Any]) -> Sequence[Any]:
        rows = [count_rows(item) for item in items]
        return split_rows(await self._predict(stack_items(items)), rows)

    @property
    def _predict_is_async(self) -> bool:
        return inspect.iscoroutinefunction(self._instance.predict)

    def _predict_sync(self, arg: Any) -> Any:
        try:
            return self._instance.predict(arg)
        except ModelyardError:
            raise
        except Exception as exc:
            raise ModelError(self.name, "predict", exc) from exc

    async def _predict(self, arg: Any) -> Any:
        if self._predict_is_async:
            try:
                return await self._instance.predict(arg)
            except ModelyardError:
                raise
            except Exception as exc:
                raise ModelError(self.name, "predict", exc) from exc
        return await self._in_thread(self._predict_sync, arg)

    def _has_hook(self, hook: str) -> bool:
        return callable(getattr(self._instance, hook, None))

    async def _call_hook(self, hook: str, *args: Any) -> Any:
        fn = getattr(self._instance, hook, None)
        if not callable(fn):
            return None
        try:
            if inspect.iscoroutinefunction(fn):
                return await fn(*args)
            return await self._in_thread(fn, *args)
        except ModelyardError:
            raise
        except Exception as exc:
            raise ModelError(self.name, hook, exc) from exc

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)


def _as_list(results: Any) -> list[Any]:
    """A batched (list) predict's results as a list; anything else is the model's error."""
    if not isinstance(results, Sequence | np.ndarray):
        raise TypeError(f"a batched predict must return a list, got {type(results).__name__}")
    return list(results)
