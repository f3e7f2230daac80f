"""``@batch``: declare adaptive batching on a model's predict hook.

The decorator does not wrap or patch anything. It returns a :class:`BatchedMethod`, a spec object
holding the original function and the :class:`BatchSpec`; the server reads it and owns the queue.
Called directly on an instance, the method is the plain function, which keeps models unit-testable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

__all__ = ["BatchSpec", "BatchedMethod", "batch"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class BatchSpec:
    """How concurrent requests are coalesced into one call of the predict hook.

    Attributes:
        max_batch_size: the most items in one call. With ``stack=True`` an item is a row of the
            batch dimension, so one request of shape [3, ...] counts 3.
        max_latency_ms: the longest an item waits for batch-mates once the model is free. The
            default, 0, never holds a request while the model idles: batches form from what
            queues while the model is busy, which is what keeps it busy under load.
        stack: False: predict gets ``list[item]`` and returns a list of the same length.
            True: items (arrays, or dicts of arrays) are concatenated along axis 0, predict gets
            one array (or dict) and returns one whose first dimension is split back per request.
    """

    max_batch_size: int = 32
    max_latency_ms: float = 0.0
    stack: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch_size, int) or isinstance(self.max_batch_size, bool):
            raise TypeError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size}")
        # ``not >= 0`` also refuses NaN, which compares false with everything.
        if not isinstance(self.max_latency_ms, int | float) or not self.max_latency_ms >= 0:
            raise ValueError(f"max_latency_ms must be a number >= 0, got {self.max_latency_ms!r}")


class BatchedMethod(Generic[F]):
    """A predict function marked for adaptive batching. A descriptor: ``obj.predict`` still works."""

    def __init__(self, fn: F, spec: BatchSpec) -> None:
        if not callable(fn):
            raise TypeError(f"@batch must decorate a function, got {fn!r}")
        self.fn = fn
        self.spec = spec
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__name__ = getattr(fn, "__name__", "predict")
        self.__doc__ = fn.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> BatchedMethod[F]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return self.fn.__get__(obj, owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``Cls.predict(instance, ...)`` calls the plain function, as it would undecorated."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"BatchedMethod({self.__name__}, {self.spec})"


def batch(
    max_batch_size: int = 32, max_latency_ms: float = 0.0, *, stack: bool = False
) -> Callable[[F], BatchedMethod[F]]:
    """Declare adaptive batching on ``predict``.

    Example::

        class Scorer:
            @modelyard.batch(max_batch_size=64, max_latency_ms=10, stack=True)
            def predict(self, x: np.ndarray) -> np.ndarray:
                return self.session.run(None, {"x": x})[0]
    """
    spec = BatchSpec(max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, stack=stack)

    def decorate(fn: F) -> BatchedMethod[F]:
        if isinstance(fn, BatchedMethod):
            raise TypeError("@batch can only be applied once")
        return BatchedMethod(fn, spec)

    return decorate
