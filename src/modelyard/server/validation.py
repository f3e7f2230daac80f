"""Check a request against the model's signature, and normalise what the model returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard.dtypes import numpy_dtype
from modelyard.errors import InvalidInput
from modelyard.sdk import ModelMetadata
from modelyard.server.types import InferenceRequest

__all__ = ["check_inputs", "check_requested_outputs", "normalize_outputs", "select_outputs"]


def check_inputs(meta: ModelMetadata, request: InferenceRequest) -> None:
    """Raise :class:`InvalidInput` naming the first input that does not fit the signature."""
    if not request.inputs:
        raise InvalidInput("the request has no inputs", field="inputs")
    if not meta.inputs:  # the model declared no signature: accept any named tensors
        return
    specs = {spec.name: spec for spec in meta.inputs}
    for name in request.inputs:
        if name not in specs:
            raise InvalidInput(
                f"unknown input '{name}'; model '{meta.name}' takes {sorted(specs)}", field=name
            )
    for spec in meta.inputs:
        array = request.inputs.get(spec.name)
        if array is None:
            raise InvalidInput(
                f"missing input '{spec.name}' (model '{meta.name}' takes {sorted(specs)})", field=spec.name
            )
        declared = request.datatypes.get(spec.name)
        if declared is not None and declared != spec.datatype:
            raise InvalidInput(
                f"input '{spec.name}' has datatype {declared}, model '{meta.name}' expects {spec.datatype}",
                field=f"{spec.name}.datatype",
            )
        if declared is None and array.dtype != numpy_dtype(spec.datatype):
            raise InvalidInput(
                f"input '{spec.name}' has dtype {array.dtype}, model '{meta.name}' expects {spec.datatype}",
                field=f"{spec.name}.datatype",
            )
        if not spec.accepts_shape(tuple(array.shape)):
            raise InvalidInput(
                f"input '{spec.name}' has shape {list(array.shape)}, model '{meta.name}' expects "
                f"{list(spec.shape)} (-1 means any size)",
                field=f"{spec.name}.shape",
            )


def check_requested_outputs(meta: ModelMetadata, requested: list[str] | None) -> None:
    if requested is None or not meta.outputs:
        return
    names = {spec.name for spec in meta.outputs}
    for name in requested:
        if name not in names:
            raise InvalidInput(
                f"unknown output '{name}'; model '{meta.name}' has {sorted(names)}", field=name
            )


def normalize_outputs(meta: ModelMetadata, result: Any) -> dict[str, np.ndarray]:
    """Turn what predict/postprocess returned into named arrays.

    A mapping keeps its names; a tuple is one output per declared output (in order); anything else
    is a single output named after the one declared output, or ``output0``.
    """
    declared = [spec.name for spec in meta.outputs]
    if isinstance(result, Mapping):
        pairs = list(result.items())
    elif isinstance(result, tuple):
        names = declared if len(declared) == len(result) else [f"output{i}" for i in range(len(result))]
        pairs = list(zip(names, result, strict=True))
    else:
        pairs = [(declared[0] if len(declared) == 1 else "output0", result)]
    return {str(name): _as_array(value) for name, value in pairs}


def select_outputs(outputs: dict[str, np.ndarray], requested: list[str] | None) -> dict[str, np.ndarray]:
    if requested is None:
        return outputs
    missing = [name for name in requested if name not in outputs]
    if missing:
        raise InvalidInput(
            f"unknown output '{missing[0]}'; the model returned {sorted(outputs)}", field=missing[0]
        )
    return {name: outputs[name] for name in requested}


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    array = np.asarray(value)
    if array.dtype.kind in ("U", "S"):
        return array.astype(object)
    return array
