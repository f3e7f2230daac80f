"""The merge/split contract of stacked batching: ``count_rows``, ``stack_items``, ``split_rows``."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.errors import InvalidInput
from modelyard.server.stacking import count_rows, split_rows, stack_items


def test_count_rows_of_arrays_and_dicts() -> None:
    assert count_rows(np.zeros((3, 2))) == 3
    assert count_rows(np.zeros((0, 2))) == 0
    assert count_rows(np.zeros(5)) == 5
    assert count_rows({"a": np.zeros((2, 4)), "b": np.zeros(2)}) == 2


def test_count_rows_refuses_scalars_and_other_types() -> None:
    with pytest.raises(InvalidInput, match="needs inputs with a batch dimension, got a scalar"):
        count_rows(np.array(1.0))
    with pytest.raises(InvalidInput, match="needs ndarray or dict items, got list"):
        count_rows([1, 2])
    with pytest.raises(InvalidInput, match="no inputs"):
        count_rows({})


def test_count_rows_mismatched_batch_dims_is_invalid_input_naming_each() -> None:
    with pytest.raises(
        InvalidInput, match=r"inputs disagree on the batch dimension: \{'a': 2, 'b': 3\}"
    ) as info:
        count_rows({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})
    assert info.value.field == "inputs"


def test_stack_single_item_is_passed_through() -> None:
    array = np.arange(6).reshape(2, 3)
    assert stack_items([array]) is array
    item = {"x": array}
    assert stack_items([item]) is item


def test_stack_and_split_arrays_round_trip() -> None:
    items = [np.full((n, 2), n, dtype=np.float32) for n in (1, 3, 2)]
    stacked = stack_items(items)
    assert stacked.shape == (6, 2)
    parts = split_rows(stacked * 10, [1, 3, 2])
    assert [p.shape for p in parts] == [(1, 2), (3, 2), (2, 2)]
    for item, part in zip(items, parts, strict=True):
        np.testing.assert_array_equal(part, item * 10)


def test_stack_and_split_dicts_round_trip() -> None:
    items = [
        {"a": np.array([[1.0]]), "b": np.array([10])},
        {"a": np.array([[2.0], [3.0]]), "b": np.array([20, 30])},
    ]
    stacked = stack_items(items)
    np.testing.assert_array_equal(stacked["a"], [[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(stacked["b"], [10, 20, 30])
    parts = split_rows({"sum": stacked["a"][:, 0] + stacked["b"], "echo": stacked["b"]}, [1, 2])
    assert len(parts) == 2
    np.testing.assert_array_equal(parts[0]["sum"], [11.0])
    np.testing.assert_array_equal(parts[1]["sum"], [22.0, 33.0])
    np.testing.assert_array_equal(parts[1]["echo"], [20, 30])


def test_split_dict_values_may_be_lists() -> None:
    parts = split_rows({"y": [1, 2, 3]}, [2, 1])
    np.testing.assert_array_equal(parts[0]["y"], [1, 2])
    np.testing.assert_array_equal(parts[1]["y"], [3])


def test_split_tuples_gives_a_tuple_per_item() -> None:
    labels = np.array([0, 1, 1])
    scores = np.array([[0.9], [0.2], [0.4]])
    parts = split_rows((labels, scores), [2, 1])
    assert all(isinstance(p, tuple) and len(p) == 2 for p in parts)
    np.testing.assert_array_equal(parts[0][0], [0, 1])
    np.testing.assert_array_equal(parts[1][1], [[0.4]])


def test_split_single_item_keeps_the_result() -> None:
    result = np.arange(4).reshape(2, 2)
    (part,) = split_rows(result, [2])
    np.testing.assert_array_equal(part, result)
    (parts,) = split_rows((result, result[:, 0]), [2])
    assert isinstance(parts, tuple)
    assert len(parts) == 2


@pytest.mark.parametrize("rows", [[2, 2], [4]])
def test_split_wrong_row_count_names_both_numbers(rows: list[int]) -> None:
    with pytest.raises(ValueError, match="got a batch of 4 rows but its result has 3 rows"):
        split_rows(np.zeros((3, 1)), rows)


@pytest.mark.parametrize("rows", [[1, 2], [3]])
def test_split_wrong_row_count_in_a_dict_names_the_output(rows: list[int]) -> None:
    with pytest.raises(ValueError, match="got a batch of 3 rows but its output 'y' has 2 rows"):
        split_rows({"y": np.zeros(2)}, rows)


@pytest.mark.parametrize("rows", [[1, 1], [2]])
def test_split_scalar_result_is_refused(rows: list[int]) -> None:
    with pytest.raises(ValueError, match="got a batch of 2 rows but its result has a scalar"):
        split_rows(np.array(1.0), rows)


@pytest.mark.parametrize("rows", [[1, 1], [2]])
def test_split_refuses_other_result_types(rows: list[int]) -> None:
    with pytest.raises(TypeError, match="must return an ndarray, dict or tuple, got str"):
        split_rows("nope", rows)


def test_stacking_items_with_different_feature_dims_fails() -> None:
    with pytest.raises(ValueError, match="dimension"):
        stack_items([np.zeros((1, 2)), np.zeros((1, 3))])


@pytest.mark.parametrize(
    "items",
    [
        [np.full((1, 4), i, dtype=np.float32) for i in range(64)],  # the common case: a row per request
        [np.arange(6.0).reshape(2, 3), np.asfortranarray(np.ones((2, 3))), np.ones((3, 6))[:, ::2]],
        [np.zeros((0, 3), dtype=np.int64), np.arange(6).reshape(2, 3), np.zeros((0, 3), dtype=np.int64)],
        [np.arange(3, dtype=np.uint8), np.arange(2, dtype=np.uint8)],  # 1-D items
        [np.ones((1, 2), dtype=np.float32), np.ones((1, 2), dtype=np.float64)],  # numpy promotes
        [np.array([[b"a"]], dtype=object), np.array([[b"bc"]], dtype=object)],  # BYTES tensors
    ],
    ids=["rows", "layouts", "empty-items", "1-d", "promotion", "objects"],
)
def test_stacking_gives_what_numpy_concatenate_gives(items: list[np.ndarray]) -> None:
    stacked = stack_items(items)
    expected = np.concatenate(items, axis=0)
    assert stacked.dtype == expected.dtype
    assert stacked.shape == expected.shape
    np.testing.assert_array_equal(stacked, expected)
    stacked[...] = 0  # writable, and a copy: the requests' own arrays are untouched
    np.testing.assert_array_equal(np.concatenate(items, axis=0), expected)


def test_stacking_large_batches_goes_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelyard.server.stacking._MEMCPY_LIMIT", 16)
    items = [np.arange(4.0).reshape(1, 4), np.arange(4.0, 8.0).reshape(1, 4)]
    np.testing.assert_array_equal(stack_items(items), np.arange(8.0).reshape(2, 4))


def test_stacking_items_of_different_widths_fails_as_numpy_does() -> None:
    with pytest.raises(ValueError, match="dimensions except for the concatenation axis must match"):
        stack_items([np.zeros((1, 3)), np.zeros((1, 4))])


def test_rows_of_one_dtype_are_merged_without_numpy_concatenate(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy lets go of the GIL around each array's copy; the model thread must not wait for it
    back once per request, so the common case copies bytes itself."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("np.concatenate was used")

    items = [np.full((1, 512), i, dtype=np.float32) for i in range(64)]
    monkeypatch.setattr(np, "concatenate", refuse)
    stacked = stack_items(items)
    assert stacked.shape == (64, 512)
    assert stacked[63, 0] == 63
