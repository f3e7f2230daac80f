"""``@batch``: validation, the spec object it returns, and that the method still works by hand."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

import modelyard
from modelyard.sdk import BatchedMethod, BatchSpec, batch


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("8", TypeError)],
)
def test_max_batch_size_must_be_a_positive_integer(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"max_batch_size must be an integer >= 1, got"):
        batch(max_batch_size=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.001, math.nan, "5", None])
def test_max_latency_ms_must_be_a_non_negative_number(value: object) -> None:
    with pytest.raises(ValueError, match=r"max_latency_ms must be a number >= 0"):
        batch(max_batch_size=4, max_latency_ms=value)  # type: ignore[arg-type]


def test_zero_latency_and_batch_of_one_are_valid() -> None:
    spec = BatchSpec(max_batch_size=1, max_latency_ms=0)
    assert (spec.max_batch_size, spec.max_latency_ms, spec.stack) == (1, 0, False)


def test_batch_returns_a_spec_object_holding_the_original_function() -> None:
    def predict(self: object, items: list[int]) -> list[int]:
        return items

    marked = batch(max_batch_size=8, max_latency_ms=2.5, stack=True)(predict)
    assert isinstance(marked, BatchedMethod)
    assert marked.fn is predict
    assert marked.spec == BatchSpec(max_batch_size=8, max_latency_ms=2.5, stack=True)
    assert marked.__name__ == "predict"
    assert marked.is_async is False
    assert "max_batch_size=8" in repr(marked)


def test_applying_batch_twice_fails() -> None:
    with pytest.raises(TypeError, match="only be applied once"):

        class Twice:
            @batch(max_batch_size=4)
            @batch(max_batch_size=2)
            def predict(self, items: list[int]) -> list[int]:
                return items


def test_batch_must_decorate_a_callable() -> None:
    with pytest.raises(TypeError, match="must decorate a function"):
        batch()(42)  # type: ignore[type-var]


class Tripler:
    """Doc of the class."""

    @batch(max_batch_size=4, max_latency_ms=1)
    def predict(self, items: list[int]) -> list[int]:
        """Triple every item."""
        return [3 * i for i in items]


def test_decorated_method_still_works_on_an_instance() -> None:
    assert Tripler().predict([1, 2]) == [3, 6]
    # Accessed on the class it is the spec, with the function's name and docstring.
    marked = Tripler.__dict__["predict"]
    assert isinstance(marked, BatchedMethod)
    assert Tripler.predict is marked
    assert marked.spec.max_batch_size == 4
    assert marked.__doc__ == "Triple every item."


def test_decorated_method_called_through_the_class_with_an_explicit_self() -> None:
    assert Tripler.predict(Tripler(), [5]) == [15]


def test_subclass_can_call_the_batched_parent_predict() -> None:
    class Sixer(Tripler):
        @batch(max_batch_size=2)
        def predict(self, items: list[int]) -> list[int]:
            return [2 * r for r in super().predict(items)]

    assert Sixer().predict([1]) == [6]


def test_async_predict_is_recognised_and_still_awaitable() -> None:
    class Async:
        @batch(max_batch_size=2)
        async def predict(self, items: list[int]) -> list[int]:
            await asyncio.sleep(0)
            return [i + 1 for i in items]

    marked = Async.__dict__["predict"]
    assert marked.is_async is True
    assert asyncio.run(Async().predict([1, 2])) == [2, 3]


def test_spec_is_exposed_on_the_model_spec() -> None:
    @modelyard.model(name="stacked")
    class Stacked:
        @modelyard.batch(max_batch_size=64, max_latency_ms=10, stack=True)
        def predict(self, x: np.ndarray) -> np.ndarray:
            return x

    assert Stacked.batch_spec == BatchSpec(64, 10, stack=True)
    instance = Stacked.create()
    array = np.ones((2, 3))
    assert instance.predict(array) is array  # type: ignore[attr-defined]
