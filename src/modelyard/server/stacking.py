"""Merge per-request items into one batch along axis 0, and split the result back.

Kept apart from the queue loop so the merge/split contract can be tested on its own.
An item is an ndarray or a mapping of name -> ndarray whose arrays share their first dimension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput

__all__ = ["count_rows", "split_rows", "stack_items"]


def count_rows(item: Any) -> int:
    """The size of an item's batch dimension (axis 0)."""
    if isinstance(item, np.ndarray):
        if item.ndim == 0:
            raise InvalidInput("a batched model needs inputs with a batch dimension, got a scalar")
        return int(item.shape[0])
    if isinstance(item, Mapping):
        sizes = {name: count_rows(value) for name, value in item.items()}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"inputs disagree on the batch dimension: {sizes}", field="inputs")
        if not sizes:
            raise InvalidInput("no inputs", field="inputs")
        return next(iter(sizes.values()))
    raise InvalidInput(f"a stacked batch needs ndarray or dict items, got {type(item).__name__}")


# Below this many bytes a batch is merged by copying bytes while holding the GIL (see _concatenate).
_MEMCPY_LIMIT = 8 * 1024 * 1024


def stack_items(items: Sequence[Any]) -> Any:
    """Concatenate items along axis 0 (one item is passed through without a copy)."""
    if len(items) == 1:
        return items[0]
    first = items[0]
    if isinstance(first, np.ndarray):
        return _concatenate(items)
    return {name: _concatenate([item[name] for item in items]) for name in first}


def _concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """``np.concatenate(arrays, axis=0)``, without letting go of the GIL once per array.

    numpy releases the GIL around every copy of more than 500 elements, so concatenating 64
    one-row requests of a 512-wide input let go of it 64 times, and the model thread, which merges
    batches, waited for the busy event loop to hand it back each time: on the benchmark host that
    wait was most of the gap between two model calls. Arrays of one dtype and row shape are copied
    here as bytes instead (plain memcpy, the GIL held throughout); anything else, and large batches
    (where releasing the GIL while copying is worth it), go to numpy.
    """
    dtypes = {array.dtype for array in arrays}
    shapes = {array.shape for array in arrays}  # usually one: every request sent one row
    dtype = dtypes.pop()
    if dtypes or dtype.hasobject or len({shape[1:] for shape in shapes}) != 1 or not min(map(len, shapes)):
        return np.concatenate(arrays, axis=0)  # promotion, numpy's own errors, object arrays
    tail = next(iter(shapes))[1:]
    rows = arrays[0].shape[0] * len(arrays) if len(shapes) == 1 else sum(a.shape[0] for a in arrays)
    if rows * dtype.itemsize * math.prod(tail) > _MEMCPY_LIMIT:
        return np.concatenate(arrays, axis=0)
    # bytearray.join copies each buffer with memcpy; the result is writable, like numpy's.
    data = bytearray().join([a.data if a.flags.c_contiguous else a.tobytes() for a in arrays])
    return np.frombuffer(data, dtype=dtype).reshape(rows, *tail)


def split_rows(result: Any, rows: Sequence[int]) -> list[Any]:
    """Split a batched result (array, dict or tuple of arrays) into per-item results.

    A batch of one item is checked like any other (and split into views, not copies), so whether
    a request succeeds never depends on whether it happened to share a batch.
    """
    total = sum(rows)
    bounds = _bounds(rows)
    if isinstance(result, np.ndarray):
        _check_rows(result, total, "result")
        return [result[start:stop] for start, stop in bounds]
    if isinstance(result, Mapping):
        parts = {}
        for name, value in result.items():
            array = np.asarray(value)
            _check_rows(array, total, f"output '{name}'")
            parts[name] = [array[start:stop] for start, stop in bounds]
        return [{name: parts[name][i] for name in parts} for i in range(len(rows))]
    if isinstance(result, tuple | list):
        columns = [split_rows(np.asarray(value), rows) for value in result]
        return [tuple(column[i] for column in columns) for i in range(len(rows))]
    raise TypeError(f"a stacked predict must return an ndarray, dict or tuple, got {type(result).__name__}")


def _bounds(rows: Sequence[int]) -> list[tuple[int, int]]:
    """(start, stop) of each item's rows; slicing views is several times cheaper than np.split."""
    bounds, start = [], 0
    for count in rows:
        bounds.append((start, start + count))
        start += count
    return bounds


def _check_rows(array: np.ndarray, total: int, what: str) -> None:
    if array.ndim == 0 or array.shape[0] != total:
        got = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
        raise ValueError(f"the predict hook got a batch of {total} rows but its {what} has {got}")
