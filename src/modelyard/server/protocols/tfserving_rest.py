"""TensorFlow Serving REST API (``/v1/models/...``): a thin adapter over :class:`DataPlane`.

Model status, model metadata and ``:predict``, in the row (``instances``) and columnar
(``inputs``) formats, shaped like real TF Serving output (snake_case keys, versions and dims as
strings). Version labels, ``:classify`` and ``:regress`` are not supported. See docs/tfserving.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.dtypes import numpy_dtype
from modelyard.errors import InvalidInput, MethodNotAllowed, RouteNotFound, Unsupported
from modelyard.sdk import ModelMetadata, TensorSpec
from modelyard.server.dataplane import DataPlane
from modelyard.server.protocols.limits import BodyLimits
from modelyard.server.protocols.metered import metered
from modelyard.server.runtime import ModelRuntime
from modelyard.server.types import InferenceRequest
from modelyard.web.http import JSON, json_response

__all__ = ["decode_predict", "encode_predict", "tfserving_routes"]

PROTOCOL = "v1"
SIGNATURE = "serving_default"
_VERBS = ("predict", "classify", "regress")
_MAX_DIMS = 32  # numpy allows 64; deeper JSON nesting is an attack, not a tensor

# ModelState -> TF Serving's ModelVersionStatus.State. FAILED has no TF counterpart: TF reports a
# version whose load failed as END with a non-OK status, which is what we do.
_STATES = {"READY": "AVAILABLE", "LOADING": "LOADING", "FAILED": "END", "UNLOADING": "UNLOADING"}
_OK = {"error_code": "OK", "error_message": ""}
_DT_NAMES = {
    "BOOL": "DT_BOOL", "UINT8": "DT_UINT8", "UINT16": "DT_UINT16", "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64", "INT8": "DT_INT8", "INT16": "DT_INT16", "INT32": "DT_INT32",
    "INT64": "DT_INT64", "FP16": "DT_HALF", "FP32": "DT_FLOAT", "FP64": "DT_DOUBLE",
    "BF16": "DT_BFLOAT16", "BYTES": "DT_STRING",
}  # fmt: skip
_KIND_WORDS = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings"}


def tfserving_routes(plane: DataPlane) -> list[Route]:
    """The TF Serving REST routes, counted in metrics under protocol ``"v1"``.

    ``{rest:path}`` captures everything after ``/v1/models/``: the ``:predict`` verb is glued to the
    last path segment, which Starlette's path parameters cannot split, so we parse it ourselves.
    """
    get = metered(plane.metrics, PROTOCOL, _Get(plane), observe=False)
    post = metered(plane.metrics, PROTOCOL, _Predict(plane))
    return [
        Route("/v1/models/{rest:path}", get, methods=["GET"]),
        Route("/v1/models/{rest:path}", post, methods=["POST"]),
    ]


# -- paths ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What a ``/v1/models/...`` path addresses. ``action`` is "", "metadata" or a verb."""

    name: str
    version: str | None
    label: str | None
    action: str


def _target(request: Request) -> _Target:
    """Parse the path after ``/v1/models/`` (nothing is looked up yet)."""
    rest: str = request.path_params["rest"]
    head, colon, verb = rest.rpartition(":")
    has_verb = bool(colon) and verb in _VERBS
    if request.method == "POST":
        if not has_verb:
            raise _no_route(request, "POST to /v1/models/<name>[/versions/<N>]:predict")
        rest, action = head, verb
    elif has_verb:
        raise MethodNotAllowed(f"':{verb}' takes POST, not {request.method}", field="method")
    elif rest.endswith("/metadata"):
        rest, action = rest.removesuffix("/metadata"), "metadata"
    else:
        action = ""
    name, *parts = rest.split("/")
    if not name:
        raise InvalidInput("Missing model name in request", field="model")
    if not parts:
        return _Target(name, None, None, action)
    if len(parts) == 2 and parts[0] == "versions":
        return _Target(name, _numeric_version(parts[1]), None, action)
    if len(parts) == 2 and parts[0] == "labels" and parts[1]:
        return _Target(name, None, parts[1], action)
    raise _no_route(request, "use /v1/models/<name>[/versions/<N>][/metadata | :predict]")


def _numeric_version(text: str) -> str:
    # TF Serving versions are int64, so "007" and "7" address the same version. Strip zeros rather
    # than call int(): int() refuses strings of over 4300 digits (a 500 for a long URL).
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > 19:
        raise InvalidInput(f"Failed to convert version '{text[:40]}' to numeric", field="version")
    return digits


def _no_route(request: Request, hint: str) -> RouteNotFound:
    return RouteNotFound(f"no route for {request.method} {request.url.path}: {hint}", field="path")


def _resolve(plane: DataPlane, request: Request, target: _Target) -> None:
    """404 for an unknown model or any label; label the request's metrics with a known model."""
    plane.model(target.name)
    # The endpoint wrapper takes the metrics label from the path parameters. Set it only once the
    # model is known, so that arbitrary names from clients never become label values.
    request.path_params["model"] = target.name
    if target.label is not None:
        raise RouteNotFound(
            f"model '{target.name}' has no version label '{target.label}': version labels are not"
            " supported, address a version with /versions/<N>",
            field="label",
        )


# -- status and metadata -------------------------------------------------------------------------


class _Get:
    """GET: model status (``/v1/models/{m}[/versions/{N}]``) or ``.../metadata``."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def __call__(self, request: Request) -> Response:
        target = _target(request)
        _resolve(self.plane, request, target)
        if target.action == "metadata":
            return json_response(_metadata(self.plane.model_metadata(target.name, target.version)))
        # Without /versions/, status covers every version; it is 200 whatever the state.
        versions = [target.version] if target.version else self.plane.model_versions(target.name)
        statuses = [_version_status(self.plane.model(target.name, v)) for v in versions]
        return json_response({"model_version_status": statuses})


def _version_status(runtime: ModelRuntime) -> dict[str, Any]:
    state = runtime.state.value
    status = {"error_code": "UNKNOWN", "error_message": runtime.reason} if state == "FAILED" else _OK
    return {"version": runtime.version, "state": _STATES.get(state, "END"), "status": status}


def _metadata(meta: ModelMetadata) -> dict[str, Any]:
    signature = {
        "inputs": {spec.name: _tensor_info(spec) for spec in meta.inputs},
        "outputs": {spec.name: _tensor_info(spec) for spec in meta.outputs},
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": meta.name, "signature_name": "", "version": meta.version},
        # Nested twice on purpose: GetModelMetadataResponse.metadata["signature_def"].signature_def.
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    dims = [{"size": str(d), "name": ""} for d in spec.shape]  # proto3 JSON renders int64 as strings
    return {
        "dtype": _DT_NAMES[spec.datatype],
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": spec.name,
    }


# -- predict -------------------------------------------------------------------------------------


class _Predict:
    """POST ``...:predict``: decode rows or columns, call the data plane, encode alike."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.limits = BodyLimits(plane.settings)

    async def __call__(self, request: Request) -> Response:
        target = _target(request)
        _resolve(self.plane, request, target)  # 404s before reading a body we would not use
        if target.action != "predict":
            raise Unsupported(
                f"':{target.action}' is not supported by this server; use ':predict'", field="path"
            )
        meta = self.plane.model_metadata(target.name, target.version)
        body = await self.limits.read(request.receive, request.scope["headers"])
        self.limits.check_json(body)
        doc = _loads(body)
        inputs, rows = decode_predict(doc, meta)
        result = await self.plane.infer(target.name, target.version, InferenceRequest(inputs=inputs))
        return encode_predict(result.outputs, rows)


def _loads(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson rejects the NaN / Infinity / -Infinity literals TF Serving accepts; the (slower)
        # stdlib parser takes them, so it only runs when the fast path fails.
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"malformed JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the body must be a JSON object, got {type(doc).__name__}", field="body")
    return doc


def decode_predict(doc: dict[str, Any], meta: ModelMetadata) -> tuple[dict[str, np.ndarray], bool]:
    """The input arrays of a ``:predict`` body, and whether it used the row format."""
    signature = doc.get("signature_name")
    if signature not in (None, "", SIGNATURE):
        raise InvalidInput(
            f"unknown signature_name {signature!r}: model '{meta.name}' only has '{SIGNATURE}'",
            field="signature_name",
        )
    rows, columns = "instances" in doc, "inputs" in doc
    if rows == columns:
        raise InvalidInput(
            "the body must have exactly one of 'instances' (row format) or 'inputs' (columnar format)",
            field="body",
        )
    specs = {spec.name: spec for spec in meta.inputs}
    named = _rows_to_columns(doc["instances"], specs) if rows else _columns(doc["inputs"], specs)
    return {name: _tensor(name, value, specs) for name, value in named.items()}, rows


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() == {"b64"}


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _single_name(specs: dict[str, TensorSpec], key: str, how: str) -> str:
    if len(specs) == 1:
        return next(iter(specs))
    if not specs:  # the model declared no signature: name the one tensor after the request key
        return key
    raise InvalidInput(f"the model takes several inputs {sorted(specs)}: {how}", field=key)


def _rows_to_columns(instances: Any, specs: dict[str, TensorSpec]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list, one element per example", field="instances")
    if not _is_named(instances[0]):
        return {_single_name(specs, "instances", "send each instance as an object {name: value}"): instances}
    keys = set(instances[0])
    for i, instance in enumerate(instances):
        if not _is_named(instance) or instance.keys() != keys:
            raise InvalidInput(
                f"instances[{i}] must be an object with the same keys as instances[0] {sorted(keys)}",
                field=f"instances[{i}]",
            )
    return {key: [instance[key] for instance in instances] for key in instances[0]}


def _columns(inputs: Any, specs: dict[str, TensorSpec]) -> dict[str, Any]:
    if not _is_named(inputs):
        return {_single_name(specs, "inputs", "send 'inputs' as an object {name: tensor}"): inputs}
    if not inputs:
        raise InvalidInput("'inputs' is an empty object", field="inputs")
    return dict(inputs)


def _tensor(name: str, value: Any, specs: dict[str, TensorSpec]) -> np.ndarray:
    """One input as an array of the signature's dtype (inferred from the JSON without one)."""
    spec = specs.get(name)
    if spec is None and specs:
        raise InvalidInput(f"unknown input '{name}'; the model takes {sorted(specs)}", field=name)
    if spec is not None and spec.datatype == "BYTES":
        return _bytes_tensor(value, name)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input '{name}' is not a tensor: its nested lists differ in length (ragged)", field=name
        ) from None
    if spec is None:
        return _bytes_tensor(value, name) if array.dtype.kind in "OUS" else array
    return _cast(array, spec.datatype, name)


def _cast(array: np.ndarray, datatype: str, name: str) -> np.ndarray:
    target = numpy_dtype(datatype)
    if not array.size:
        return array.astype(target)
    # Strict, like TF Serving: no booleans as numbers, no numbers as booleans, no numeric strings.
    if array.dtype.kind not in ("b" if target.kind == "b" else "iuf"):
        got = _KIND_WORDS.get(array.dtype.kind, "values that are not all numbers (or a ragged list)")
        raise InvalidInput(f"input '{name}' expects {datatype} values, got {got}", field=name)
    if target.kind in "iu":
        # JSON has one number type: 3.0 is fine for an integer input (as on /v2), 3.5 is not.
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (np.trunc(array) == array)):
            raise InvalidInput(f"input '{name}' expects {datatype} values, got fractions", field=name)
        info = np.iinfo(target.name)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(f"input '{name}' has values out of the {datatype} range", field=name)
    try:
        with np.errstate(over="raise"):  # 1e300 does not fit FP32: refuse rather than send inf
            return array.astype(target, copy=False)
    except FloatingPointError:
        raise InvalidInput(f"input '{name}' has values out of the {datatype} range", field=name) from None


def _bytes_tensor(value: Any, name: str) -> np.ndarray:
    leaves: list[bytes] = []
    shape = _collect(value, leaves, name, 0)
    # Not np.array(leaves): that would make a fixed-width "S" array and drop trailing NUL bytes.
    return np.fromiter(leaves, dtype=object, count=len(leaves)).reshape(shape)


def _collect(value: Any, leaves: list[bytes], name: str, depth: int) -> tuple[int, ...]:
    """Append the leaves of a nested list to ``leaves``; return its shape (ragged raises)."""
    if not isinstance(value, list):
        leaves.append(_to_bytes(value, name))
        return ()
    if depth >= _MAX_DIMS:
        raise InvalidInput(f"input '{name}' has more than {_MAX_DIMS} dimensions", field=name)
    shapes = {_collect(item, leaves, name, depth + 1) for item in value}
    if len(shapes) > 1:
        raise InvalidInput(
            f"input '{name}' is not a tensor: its nested lists differ in length (ragged)", field=name
        )
    return (len(value), *(shapes.pop() if shapes else ()))


def _to_bytes(value: Any, name: str) -> bytes:
    try:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value) and isinstance(value["b64"], str):
            return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidInput(f"input '{name}' has a bad string or b64 value: {exc}", field=name) from None
    raise InvalidInput(
        f"input '{name}' expects BYTES values (strings or {{\"b64\": ...}}), got {type(value).__name__}",
        field=name,
    )


def encode_predict(outputs: dict[str, np.ndarray], rows: bool) -> Response:
    """``{"predictions": ...}`` for a row request, ``{"outputs": ...}`` for a columnar one."""
    values = {name: _json_value(name, array) for name, array in outputs.items()}
    if rows:
        doc: dict[str, Any] = {"predictions": _per_row(values, outputs)}
    else:
        doc = {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if any(_non_finite(array) for array in outputs.values()):
        # TF Serving emits NaN / Infinity literals, which orjson would turn into null: take the
        # stdlib encoder, but only for responses that hold such values.
        body = json.dumps(doc, default=_plain, separators=(",", ":")).encode()
        return Response(body, media_type=JSON)
    return json_response(doc)


def _per_row(values: dict[str, Any], outputs: dict[str, np.ndarray]) -> Any:
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise InvalidInput(
            f"the model's outputs {sizes} do not share a batch dimension, so they cannot be split into"
            " rows; send the columnar format ('inputs') instead",
            field="instances",
        )
    if len(values) == 1:  # a single output drops its name: a list of values
        return next(iter(values.values()))
    count = next(iter(sizes.values()))
    assert count is not None
    return [{name: value[i] for name, value in values.items()} for i in range(count)]


def _json_value(name: str, array: np.ndarray) -> Any:
    """Something orjson serialises: numeric arrays stay arrays, text becomes nested lists."""
    if array.dtype.kind in "OUS":
        return _text(array.tolist(), b64=name.endswith("_bytes"))
    if array.ndim == 0:
        return array.item()
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array)  # orjson serialises C-contiguous arrays only
    return array.tolist()


def _text(value: Any, b64: bool) -> Any:
    """Outputs named ``*_bytes`` become ``{"b64": ...}``; other strings stay strings."""
    if isinstance(value, list):
        return [_text(item, b64) for item in value]
    if isinstance(value, str):
        value = value.encode("utf-8") if b64 else value
    if isinstance(value, bytes):
        if not b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass  # not text: base64 it rather than lose or mangle the bytes
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _non_finite(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" and array.size > 0 and not bool(np.isfinite(array).all())


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
