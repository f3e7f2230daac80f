"""numpy arrays <-> Open Inference Protocol JSON tensors, for the client.

Requests and responses are plain JSON (no binary tensor extension): it is what every OIP server and
the gateway accept, and it keeps BYTES, FP16 and BOOL unambiguous. The datatype of each input is its
array's dtype, mapped by :mod:`modelyard.dtypes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from modelyard.client.errors import InvalidArgument
from modelyard.dtypes import DATATYPES, datatype_of, numpy_dtype

__all__ = ["decode_outputs", "encode_request"]


def encode_request(
    inputs: Mapping[str, Any],
    outputs: Sequence[str] | None,
    request_id: str,
    parameters: Mapping[str, Any] | None,
) -> bytes:
    """The JSON body of an inference request; bad arguments raise InvalidArgument naming them."""
    if not isinstance(inputs, Mapping):
        raise InvalidArgument(
            f"inputs must be a mapping of input name to array, got {type(inputs).__name__}", field="inputs"
        )
    if not inputs:
        raise InvalidArgument("inputs is empty: give at least one input tensor", field="inputs")
    doc: dict[str, Any] = {
        "id": request_id,
        "inputs": [_input(name, value) for name, value in inputs.items()],
    }
    if outputs is not None:
        doc["outputs"] = [{"name": name} for name in _output_names(outputs)]
    if parameters is not None:
        if not isinstance(parameters, Mapping) or not all(isinstance(key, str) for key in parameters):
            raise InvalidArgument("parameters must be a mapping with string keys", field="parameters")
        doc["parameters"] = dict(parameters)
    try:
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:  # only parameters can still hold something JSON cannot carry
        raise InvalidArgument(f"parameters cannot be sent as JSON: {exc}", field="parameters") from None


def _input(name: Any, value: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"input names must be non-empty strings, got {name!r}", field="inputs")
    where = f"inputs[{name!r}]"
    array = _as_array(value, where)
    if array.dtype.kind in "USO":
        return {"name": name, "datatype": "BYTES", "shape": list(array.shape), "data": _text(array, where)}
    try:
        datatype = datatype_of(array)
    except TypeError as exc:
        supported = ", ".join(sorted(DATATYPES - {"BF16"}))
        raise InvalidArgument(f"{where}: {exc} (supported: {supported})", field=where) from None
    if datatype == "FP16":
        array = array.astype(np.float32)  # JSON numbers: float32 prints each float16 value exactly
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel()}


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise InvalidArgument(f"{where} is not an array: {exc}", field=where) from None
    if not array.dtype.isnative:  # orjson writes native byte order only; the values are what count
        array = array.astype(array.dtype.newbyteorder("="))
    return array  # not ascontiguousarray: it turns a scalar into shape [1]; ravel() copies if needed


def _text(array: np.ndarray, where: str) -> list[str]:
    """BYTES elements as JSON strings: str as is, bytes as UTF-8 (JSON cannot carry other bytes)."""
    data: list[str] = []
    for index, value in enumerate(array.ravel()):
        if isinstance(value, bytes):
            try:
                data.append(value.decode())
            except UnicodeDecodeError:
                raise InvalidArgument(
                    f"{where}: element {index} is not UTF-8 text; BYTES travel as JSON strings", field=where
                ) from None
        elif isinstance(value, str):
            data.append(str(value))  # np.str_ is a str subclass that orjson refuses
        else:
            raise InvalidArgument(
                f"{where}: an object array must hold only str or bytes (sent as BYTES), element {index}"
                f" is {type(value).__name__}",
                field=where,
            )
    return data


def _output_names(outputs: Sequence[str]) -> list[str]:
    if isinstance(outputs, str | bytes) or not isinstance(outputs, Sequence):
        raise InvalidArgument("outputs must be a list of output names", field="outputs")
    names = list(outputs)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise InvalidArgument("outputs must be a non-empty list of non-empty names", field="outputs")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"outputs names an output twice: {names}", field="outputs")
    return names


def decode_outputs(doc: Any) -> dict[str, np.ndarray]:
    """The output tensors of an inference response, by name; ``ValueError`` names what is malformed."""
    entries = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the response has no 'outputs' list")
    outputs: dict[str, np.ndarray] = {}
    for index, entry in enumerate(entries):
        where = f"outputs[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{where} has no name")
        outputs[entry["name"]] = _output(entry, where)
    return outputs


def _output(entry: dict[str, Any], where: str) -> np.ndarray:
    datatype, shape = entry.get("datatype"), entry.get("shape")
    if datatype not in DATATYPES:
        raise ValueError(f"{where}.datatype {datatype!r} is not an OIP datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{where}.shape {shape!r} is not a list of sizes")
    if "data" not in entry:
        raise ValueError(f"{where} has no JSON 'data' (binary outputs are not requested by this client)")
    data = entry["data"]
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).ravel()
            array = np.array([_as_bytes(value) for value in flat] or [], dtype=object)
        else:
            array = np.asarray(data, dtype=numpy_dtype(str(datatype)))
        if array.size != math.prod(shape):
            raise ValueError(f"{array.size} elements for shape {shape}")
        return array.reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{where}.data does not hold {datatype} values of shape {shape}: {exc}") from None


def _as_bytes(value: Any) -> bytes:
    # BYTES come back as bytes, as tritonclient returns them: the client cannot know an encoding.
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"BYTES elements must be strings, got {type(value).__name__}")
