"""Open Inference Protocol gRPC messages <-> the transport-free :class:`InferenceRequest` / response.

Every check and byte layout that REST also has comes from :mod:`.oip_codec` (a tensor's name,
datatype and shape; raw little-endian bytes; numbers range-checked as a datatype; requested outputs
and the ``timeout`` parameter): this module only walks the messages.

Raw or typed answers. ``raw_output_contents`` when the request sent ``raw_input_contents`` (what
tritonclient.grpc always does), when it asks for them the binary extension's way
(``binary_data_output`` on the request, ``binary_data`` on an output), or when an output has no
typed field (FP16, BF16); otherwise the typed ``contents`` fields, as the request used them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelyard.dtypes import datatype_of
from modelyard.errors import InvalidInput
from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb
from modelyard.server.protocols.oip_codec import (
    array_from_raw,
    binary_output_choices,
    check_tensor,
    encode_bytes_tensor,
    numbers_as,
    raw_bytes,
    requested_outputs,
    timeout_of,
)
from modelyard.server.types import InferenceRequest, InferenceResponse

__all__ = ["decode_infer_request", "encode_infer_response", "parameters_of"]

# The typed field of InferTensorContents that carries each datatype; FP16 and BF16 have none.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_of(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A protobuf parameter map as plain values, as the JSON of a REST request would carry them."""
    plain: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            plain[key] = getattr(value, choice)
    return plain


def decode_infer_request(
    message: pb.ModelInferRequest, deadline_s: float | None = None
) -> tuple[InferenceRequest, bool]:
    """The request, and whether the answer goes back as ``raw_output_contents``.

    ``deadline_s``: the seconds the call's gRPC deadline leaves, if it has one; the request's own
    ``timeout`` parameter can only shorten it.
    """
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs:"
            " one per input, in order",
            field="raw_input_contents",
        )
    if not message.inputs:
        raise InvalidInput("'inputs' must be a non-empty list", field="inputs")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for i, tensor in enumerate(message.inputs):
        where = f"inputs[{i}]"
        shape = check_tensor(tensor.name, tensor.datatype, list(tensor.shape), where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"{where} has contents although the request uses raw_input_contents",
                    field=f"{where}.contents",
                )
            array = array_from_raw(raw[i], tensor.datatype, shape, where, f"raw_input_contents[{i}]")
        else:
            array = _from_contents(tensor.contents, tensor.datatype, shape, where)
        if tensor.name in inputs:
            raise InvalidInput(f"input '{tensor.name}' appears twice", field=f"{where}.name")
        inputs[tensor.name], datatypes[tensor.name] = array, tensor.datatype
    parameters = parameters_of(message.parameters)
    outputs_doc = [{"name": o.name, "parameters": parameters_of(o.parameters)} for o in message.outputs]
    timeout = timeout_of(parameters)
    if deadline_s is not None:
        timeout = deadline_s if timeout is None else min(timeout, deadline_s)
    request = InferenceRequest(
        inputs=inputs,
        datatypes=datatypes,
        id=message.id or None,
        parameters=parameters,
        outputs=requested_outputs(outputs_doc) if outputs_doc else None,
        timeout_s=timeout,
    )
    asked = parameters.get("binary_data_output", bool(raw)) is True
    return request, asked or any(binary_output_choices(outputs_doc).values())


def _from_contents(
    contents: pb.InferTensorContents, datatype: str, shape: tuple[int, ...], where: str
) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"{where}: {datatype} has no typed contents field; send it in raw_input_contents",
            field=f"{where}.contents",
        )
    values = getattr(contents, field)
    count = int(np.prod(shape))
    if len(values) != count:
        raise InvalidInput(
            f"{where}.contents.{field} has {len(values)} elements but shape {list(shape)} needs {count}",
            field=f"{where}.contents.{field}",
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return numbers_as(list(values), datatype).reshape(shape)
    except (TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"{where}.contents.{field} does not hold {datatype} values: {exc}",
            field=f"{where}.contents.{field}",
        ) from None


# -- responses -----------------------------------------------------------------------------------


def encode_infer_response(response: InferenceResponse, raw: bool) -> pb.ModelInferResponse:
    """The answer; raw contents when ``raw`` or when an output has no typed field."""
    datatypes = {name: datatype_of(array) for name, array in response.outputs.items()}
    raw = raw or any(datatype not in CONTENTS_FIELD for datatype in datatypes.values())
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for name, array in response.outputs.items():
        datatype = datatypes[name]
        tensor = message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            message.raw_output_contents.append(
                encode_bytes_tensor(array) if datatype == "BYTES" else raw_bytes(array)
            )
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(_typed(array, datatype))
    return message


def _typed(array: np.ndarray, datatype: str) -> Iterable[Any]:
    flat = array.ravel()
    if datatype == "BYTES":
        return [v if isinstance(v, bytes) else str(v).encode() for v in flat]
    return flat.tolist()  # plain Python numbers: protobuf's repeated fields take no numpy scalars
