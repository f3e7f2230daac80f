"""A logged answer as arrays: the response body of an inference-log record, decoded.

Only the numbers are kept: an Open Inference Protocol answer's ``outputs`` (its ``model_name``,
``model_version`` and ``id`` differ between versions by design), a TF-Serving answer's
``predictions`` or ``outputs``. Every output of an answer is shaped ``(rows, ...)`` with the same
``rows``, so answers can be stacked into one batch per pair (``online.py``). What cannot be read as
arrays — a binary-extension body (logged as ``b64:...``), an error body, JSON of another shape —
decodes to None, and the pair is then compared on the body's hash: exact match only.

Text stays Python strings in object arrays, never numpy's fixed-width strings: those are as wide as
the longest string times the number of them, so one long string among many short ones would turn a
40 KB body into 80 MB. An answer's arrays then take at most a small multiple of its body's size
(:func:`answer_bytes` is what the analysis counts for it while it waits to be compared).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from modelyard.dtypes import numpy_dtype

__all__ = ["HASH_OUTPUT", "Answer", "answer_bytes", "decode_answer", "hash_answer", "rows_of"]

Answer = dict[str, np.ndarray]
HASH_OUTPUT = "(response)"  # the output name an answer compared by its hash goes by


def decode_answer(body: str | None, protocol: str) -> Answer | None:
    """The arrays in ``body`` (a record's ``response_body``), rows first; None when it holds none."""
    if not body or body.startswith("b64:"):
        return None
    try:
        doc = orjson.loads(body)
        outputs = _tfserving(doc) if protocol == "tfserving" else _oip(doc)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
        return None
    return _rows_first(outputs) if outputs else None


def hash_answer(digest: str) -> Answer:
    """An answer known only by its hash: one row, compared exactly."""
    return {HASH_OUTPUT: np.array([digest])}


def rows_of(answer: Answer) -> int:
    """The rows of a decoded answer (every output has them along axis 0)."""
    return int(next(iter(answer.values())).shape[0])


def answer_bytes(answer: Answer, body: str | None) -> int:
    """About the memory an answer decoded from ``body`` holds: its arrays, plus the body's length
    for the strings an object array points to (they are never longer than the body)."""
    return sum(array.nbytes for array in answer.values()) + (len(body) if body else 0)


def _oip(doc: Any) -> Answer | None:
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list):
        return None
    decoded: Answer = {}
    for entry in outputs:
        data = entry["data"]  # absent for binary outputs: KeyError, the answer is then hashed
        datatype = entry["datatype"]
        if datatype == "BYTES":
            array = np.asarray(data, dtype=object)
        else:
            array = np.asarray(data, dtype=numpy_dtype(datatype))
        decoded[str(entry["name"])] = array.reshape([int(size) for size in entry["shape"]])
    return decoded


def _tfserving(doc: Any) -> Answer | None:
    if not isinstance(doc, dict):
        return None
    if "predictions" in doc:
        rows = doc["predictions"]
        if isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows):
            return {name: _array([row[name] for row in rows]) for name in rows[0]}
        return {"predictions": _array(rows)}
    if "outputs" in doc:
        value = doc["outputs"]
        if isinstance(value, Mapping):
            return {str(name): _array(column) for name, column in value.items()}
        return {"outputs": _array(value)}
    return None


_NUMBERS = {bool, int, float}


def _array(value: Any) -> np.ndarray:
    # As objects first: pointers only, whatever the strings (see the module doc).
    objects = np.asarray(value, dtype=object)
    kinds = set(map(type, objects.flat))
    if kinds <= _NUMBERS:
        return np.asarray(value)  # numbers: numpy picks the dtype (bool, int64 or float64)
    if kinds <= {str}:
        return objects
    raise ValueError("not a rectangular array")  # ragged lists, or numbers mixed with text


def _rows_first(outputs: Answer) -> Answer:
    """Every output as ``(rows, ...)``; outputs that disagree on their first axis make one row."""
    firsts = {array.shape[0] if array.ndim else 0 for array in outputs.values()}
    if len(firsts) == 1 and 0 not in firsts:  # scalars and empty outputs: one row
        return outputs
    return {name: array.reshape(1, *array.shape) for name, array in outputs.items()}
