"""The tensor datatype vocabulary (Open Inference Protocol names) and its numpy mapping.

Every plane speaks OIP datatype names (``FP32``, ``BYTES``...); this module is the single place
that converts them to and from numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DATATYPES", "datatype_of", "itemsize", "numpy_dtype"]

# BF16 has no numpy dtype; it travels as raw 2-byte words and is widened to float32 on arrival.
_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.float32),
    "BYTES": np.dtype(np.object_),
}
_FROM_NUMPY = {dt: name for name, dt in _TO_NUMPY.items() if name != "BF16"}

DATATYPES: frozenset[str] = frozenset(_TO_NUMPY)


def numpy_dtype(datatype: str) -> np.dtype[np.generic]:
    """The numpy dtype for an OIP datatype name; ``KeyError`` for an unknown name."""
    return _TO_NUMPY[datatype]


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype name of a numpy array (strings and bytes arrays are ``BYTES``)."""
    kind = array.dtype.kind
    if kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return _FROM_NUMPY[array.dtype]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype") from None


def itemsize(datatype: str) -> int | None:
    """Bytes per element on the wire, or None for the variable-size BYTES."""
    if datatype == "BYTES":
        return None
    if datatype == "BF16":
        return 2
    return _TO_NUMPY[datatype].itemsize
