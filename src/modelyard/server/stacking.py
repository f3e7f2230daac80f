"""Merge per-request items into one batch along axis 0, and split the result back.

Kept apart from the queue loop so the merge/split contract can be tested on its own.
An item is an ndarray or a mapping of name -> ndarray whose arrays share their first dimension.
"""

from __future__ import annotations

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


def stack_items(items: Sequence[Any]) -> Any:
    """Concatenate items along axis 0 (one item is passed through without a copy)."""
    if len(items) == 1:
        return items[0]
    first = items[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(items, axis=0)
    return {name: np.concatenate([item[name] for item in items], axis=0) for name in first}


def split_rows(result: Any, rows: Sequence[int]) -> list[Any]:
    """Split a batched result (array, dict or tuple of arrays) into per-item results.

    A batch of one item is checked like any other (and split into views, not copies), so whether
    a request succeeds never depends on whether it happened to share a batch.
    """
    total = sum(rows)
    offsets = np.cumsum(rows)[:-1]
    if isinstance(result, np.ndarray):
        _check_rows(result, total, "result")
        return list(np.split(result, offsets, axis=0))
    if isinstance(result, Mapping):
        parts = {}
        for name, value in result.items():
            array = np.asarray(value)
            _check_rows(array, total, f"output '{name}'")
            parts[name] = np.split(array, offsets, axis=0)
        return [{name: parts[name][i] for name in parts} for i in range(len(rows))]
    if isinstance(result, tuple | list):
        columns = [split_rows(np.asarray(value), rows) for value in result]
        return [tuple(column[i] for column in columns) for i in range(len(rows))]
    raise TypeError(f"a stacked predict must return an ndarray, dict or tuple, got {type(result).__name__}")


def _check_rows(array: np.ndarray, total: int, what: str) -> None:
    if array.ndim == 0 or array.shape[0] != total:
        got = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
        raise ValueError(f"the predict hook got a batch of {total} rows but its {what} has {got}")
