"""Open Inference Protocol (KServe V2) REST codec: JSON tensors and the binary tensor extension.

Request body: JSON, optionally followed by raw tensor bytes; ``Inference-Header-Content-Length``
gives the JSON's byte length (after decompression). Binary chunks follow in ``inputs`` order.

The checks and layouts that do not depend on JSON are public here, and the gRPC codec
(:mod:`~modelyard.server.protocols.oip_grpc_codec`) uses them too: a tensor's name, datatype and
shape (:func:`check_tensor`), raw little-endian bytes both ways (:func:`array_from_raw`,
:func:`raw_bytes`, :func:`encode_bytes_tensor`; gRPC's ``raw_*_contents`` share the binary
extension's layout), numbers as a datatype (:func:`numbers_as`), requested outputs and the
``timeout`` parameter (:func:`requested_outputs`, :func:`timeout_of`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from typing import Any, cast

import numpy as np
import orjson

from modelyard.dtypes import DATATYPES, datatype_of, itemsize, numpy_dtype
from modelyard.errors import InvalidInput
from modelyard.server.types import InferenceRequest, InferenceResponse

__all__ = [
    "HEADER_LENGTH",
    "array_from_raw",
    "binary_output_choices",
    "check_tensor",
    "decode_request",
    "encode_bytes_tensor",
    "encode_response",
    "numbers_as",
    "raw_bytes",
    "requested_outputs",
    "timeout_of",
]

HEADER_LENGTH = "inference-header-content-length"
_MAX_ELEMENTS = 1 << 31
_MAX_DIMS = 32  # numpy 1.x supports 32 dimensions, numpy 2 supports 64


def decode_request(
    body: bytes, header_length: str | None, check_json: Callable[[bytes], None] | None = None
) -> tuple[InferenceRequest, dict[str, bool]]:
    """Parse an OIP inference request; every error names the field at fault.

    ``check_json`` sees the JSON part before it is parsed, and may refuse it (the server's
    :class:`~modelyard.server.protocols.limits.BodyLimits`). Returns the request and the
    per-output ``binary_data`` choices for the response.
    """
    json_part, binary = _split(body, header_length)
    if check_json is not None:
        check_json(json_part)
    doc = _loads(json_part)
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise InvalidInput("'inputs' must be a non-empty list", field="inputs")
    parameters = _parameters(doc.get("parameters"), "parameters")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for i, entry in enumerate(inputs_doc):
        name, datatype, array, used = _decode_input(entry, f"inputs[{i}]", binary, offset)
        if name in inputs:
            raise InvalidInput(f"input '{name}' appears twice", field=f"inputs[{i}].name")
        inputs[name], datatypes[name] = array, datatype
        offset += used
    if offset != len(binary):
        raise InvalidInput(
            f"binary section has {len(binary)} bytes but inputs' binary_data_size add up to {offset}",
            field="inputs",
        )
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string", field="id")
    request = InferenceRequest(
        inputs=inputs,
        datatypes=datatypes,
        id=request_id,
        parameters=parameters,
        outputs=requested_outputs(doc.get("outputs")),
        timeout_s=timeout_of(parameters),
    )
    return request, binary_output_choices(doc.get("outputs"))


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    digits = header_length.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length '{header_length}' is not a length"
            f" within the {len(body)}-byte body",
            field="Inference-Header-Content-Length",
        )
    n = int(digits)
    return body[:n], body[n:]


def _loads(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the body must be a JSON object, got {type(doc).__name__}", field="body")
    return doc


def _parameters(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'{field}' must be an object", field=field)
    return value


def _decode_input(entry: Any, where: str, binary: bytes, offset: int) -> tuple[str, str, np.ndarray, int]:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where} must be an object", field=where)
    name, datatype, shape = _tensor_header(entry, where)
    params = _parameters(entry.get("parameters"), f"{where}.parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"{where}.parameters.binary_data_size must be an integer >= 0", field=where)
        if offset + size > len(binary):
            raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body", field=where)
        return name, datatype, array_from_raw(binary[offset : offset + size], datatype, shape, where), size
    if "data" not in entry:
        raise InvalidInput(
            f"{where} has neither 'data' nor parameters.binary_data_size", field=f"{where}.data"
        )
    return name, datatype, _from_json(entry["data"], datatype, shape, where), 0


def _tensor_header(entry: dict[str, Any], where: str) -> tuple[str, str, tuple[int, ...]]:
    name, datatype = entry.get("name"), entry.get("datatype")
    shape = check_tensor(name, datatype, entry.get("shape"), where)
    return str(name), str(datatype), shape


def check_tensor(name: Any, datatype: Any, shape: Any, where: str) -> tuple[int, ...]:
    """A tensor's declared name, datatype and shape checked, whatever carried them; its shape.

    ``where`` names the tensor in errors (``inputs[0]``).
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}.name must be a non-empty string", field=f"{where}.name")
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}.datatype {datatype!r} is not one of {sorted(DATATYPES)}", field=f"{where}.datatype"
        )
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"{where}.shape must be a list of integers >= 0", field=f"{where}.shape")
    if len(shape) > _MAX_DIMS:
        raise InvalidInput(
            f"{where}.shape has {len(shape)} dimensions; at most {_MAX_DIMS} are supported",
            field=f"{where}.shape",
        )
    # Zeros make the product 0, but numpy still refuses [2**62, 0] ("array is too big"): bound the
    # product of the other dimensions too, which also bounds every single dimension.
    if math.prod(d for d in shape if d) > _MAX_ELEMENTS:
        raise InvalidInput(
            f"{where}.shape {shape} is too large: the product of its non-zero dimensions must be at"
            f" most {_MAX_ELEMENTS}",
            field=f"{where}.shape",
        )
    return tuple(shape)


def _is_dim(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    count = math.prod(shape)
    # Flat data has `count` items, nested data `shape[0]`: more is wrong whatever it holds, and
    # refusing it here spares numpy the walk over a long list of (empty) lists.
    if isinstance(data, list) and len(data) > max(count, shape[0] if shape else 1):
        raise InvalidInput(
            f"{where}.data has {len(data)} items but shape {list(shape)} needs {count} elements",
            field=f"{where}.data",
        )
    try:
        array = _bytes_from_json(data) if datatype == "BYTES" else numbers_as(data, datatype)
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
        raise InvalidInput(
            f"{where}.data does not hold {datatype} values: {exc}", field=f"{where}.data"
        ) from None
    if array.size != count:
        raise InvalidInput(
            f"{where}.data has {array.size} elements but shape {list(shape)} needs {count}",
            field=f"{where}.data",
        )
    return array.reshape(shape)


def numbers_as(data: Any, datatype: str) -> np.ndarray:
    """Numbers (or booleans for BOOL) as ``datatype``, range-checked; never coerces strings, nulls
    or objects. Raises ``TypeError`` or ``OverflowError``; the caller names the field."""
    dtype = numpy_dtype(datatype)
    parsed = np.asarray(data)
    if parsed.size == 0:
        return parsed.astype(dtype)
    allowed = "b" if dtype.kind == "b" else "iuf"  # numpy kinds of the parsed JSON elements
    if parsed.dtype.kind not in allowed:
        wanted = "true/false" if dtype.kind == "b" else "numbers"
        raise TypeError(f"expected {wanted}, got elements of numpy dtype {parsed.dtype}")
    if dtype.kind in "iu":
        if parsed.dtype.kind == "f" and not np.all(np.isfinite(parsed) & (np.trunc(parsed) == parsed)):
            raise TypeError("expected integers, got fractional or non-finite numbers")
        info = np.iinfo(cast("np.dtype[np.integer[Any]]", dtype))
        if parsed.min() < info.min or parsed.max() > info.max:
            raise OverflowError(f"values outside [{info.min}, {info.max}]")
    if dtype.kind == "f" and parsed.dtype.itemsize > dtype.itemsize:
        # e.g. 1e300 does not fit FP32. Checked with two reductions: np.errstate costs more than
        # the whole cast on this hot path.
        limit = float(np.finfo(cast("np.dtype[np.floating[Any]]", dtype)).max)
        if parsed.max() > limit or parsed.min() < -limit:
            raise OverflowError(f"values outside the {datatype} range")
    return parsed.astype(dtype, copy=False)


def _bytes_from_json(data: Any) -> np.ndarray:
    flat = np.asarray(data, dtype=object).ravel()
    out = np.empty(flat.size, dtype=object)
    for i, value in enumerate(flat):
        if isinstance(value, str):
            out[i] = value.encode()
        elif isinstance(value, bytes):
            out[i] = value
        else:
            raise TypeError(f"BYTES elements must be strings, got {type(value).__name__}")
    return out


def array_from_raw(
    chunk: bytes, datatype: str, shape: tuple[int, ...], where: str, size_field: str = ""
) -> np.ndarray:
    """One tensor's raw bytes (little-endian, row-major; BYTES length-prefixed) as an array.

    ``size_field`` names what gave the size in errors (default: the binary extension's
    ``{where}.parameters.binary_data_size``).
    """
    count = math.prod(shape)
    width = itemsize(datatype)
    if width is None:
        return _parse_bytes_tensor(chunk, count, where).reshape(shape)
    if len(chunk) != count * width:
        size_field = size_field or f"{where}.parameters.binary_data_size"
        raise InvalidInput(
            f"{where}: {size_field.rsplit('.', 1)[-1]} {len(chunk)} != {count} elements x {width} bytes"
            f" for shape {list(shape)}",
            field=size_field,
        )
    if datatype == "BF16":  # bfloat16 is the high half of a float32
        words = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
        return words.view(np.float32).reshape(shape)
    return np.frombuffer(chunk, dtype=numpy_dtype(datatype).newbyteorder("<")).reshape(shape)


def _parse_bytes_tensor(chunk: bytes, count: int, where: str) -> np.ndarray:
    if count * 4 > len(chunk):  # before allocating: every element needs its 4-byte length prefix
        raise InvalidInput(
            f"{where}: {len(chunk)} bytes cannot hold {count} BYTES elements (4-byte length prefix each)",
            field=where,
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(chunk):
            raise InvalidInput(f"{where}: BYTES data ends inside element {i}", field=where)
        (length,) = struct.unpack_from("<I", chunk, pos)
        pos += 4
        if pos + length > len(chunk):
            raise InvalidInput(f"{where}: BYTES element {i} runs past the end of its data", field=where)
        out[i] = chunk[pos : pos + length]
        pos += length
    if pos != len(chunk):
        raise InvalidInput(
            f"{where}: {len(chunk) - pos} bytes left after {count} BYTES elements", field=where
        )
    return out


def requested_outputs(value: Any) -> list[str] | None:
    """The requested output names of an ``outputs`` list (``[{"name", "parameters"?}]``); None: all."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list", field="outputs")
    names = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a string 'name'", field=f"outputs[{i}]")
        params = _parameters(entry.get("parameters"), f"outputs[{i}].parameters")
        if params.get("classification"):
            raise InvalidInput(
                "the classification extension is not supported", field=f"outputs[{i}].parameters"
            )
        names.append(entry["name"])
    return names


def timeout_of(parameters: Mapping[str, Any]) -> float | None:
    """The request's ``timeout`` parameter in seconds, or None."""
    value = parameters.get("timeout")  # Triton's reserved parameter, in microseconds
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInput(
            "parameters.timeout must be a positive integer (microseconds)", field="parameters.timeout"
        )
    return value / 1e6


# -- responses -----------------------------------------------------------------------------------


def encode_response(
    response: InferenceResponse, binary_default: bool, binary_outputs: Mapping[str, bool]
) -> tuple[bytes, int | None]:
    """Render a response; returns the body and the JSON length when binary chunks follow."""
    outputs_doc: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary_outputs.get(name, binary_default):
            raw = encode_bytes_tensor(array) if datatype == "BYTES" else raw_bytes(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array, datatype)
        outputs_doc.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    doc["outputs"] = outputs_doc
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def binary_output_choices(doc_outputs: Any) -> dict[str, bool]:
    """Per-output ``binary_data`` flags from the request's ``outputs`` list."""
    choices: dict[str, bool] = {}
    if isinstance(doc_outputs, list):
        for entry in doc_outputs:
            if isinstance(entry, dict) and isinstance(entry.get("parameters"), dict):
                flag = entry["parameters"].get("binary_data")
                if isinstance(flag, bool):
                    choices[str(entry.get("name"))] = flag
    return choices


def encode_bytes_tensor(array: np.ndarray) -> bytes:
    """A BYTES tensor on the wire: each element a 4-byte little-endian length, then its bytes."""
    parts: list[bytes] = []
    for value in array.ravel():
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(struct.pack("<I", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def raw_bytes(array: np.ndarray) -> bytes:
    """A fixed-size tensor on the wire: little-endian, row-major, no padding."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _json_data(array: np.ndarray, datatype: str) -> Any:
    if datatype == "BYTES":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    if array.dtype == np.float16:
        return array.astype(np.float32).ravel()
    return np.ascontiguousarray(array).ravel()
