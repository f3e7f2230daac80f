"""``modelyard import-mlflow``: an MLflow model directory (``MLmodel`` + files) -> a package.

Flavors, in order of preference, with no mlflow installed at import time:

- ``onnx`` (``data: model.onnx``) -> the zero-code ONNX runtime; signature read from the graph;
- ``sklearn`` with ``serialization_format`` pickle or cloudpickle (``pickled_model: model.pkl``)
  -> the zero-code scikit-learn runtime: input ``input`` FP64 ``[-1, n]`` (n: the signature's
  columns or tensor width), output ``predict``;
- any other model with a ``python_function`` flavor -> :class:`MlflowPyfuncModel`, which imports
  ``mlflow.pyfunc`` when the model loads (``pip install 'modelyard[mlflow]'``).

Signatures: a tensor-based MLflow signature keeps each tensor's dtype and shape; a column-based one
becomes one input per column, shape ``[-1]``, the column type mapped to the closest OIP datatype
(double FP64, float FP32, long INT64, integer INT32, boolean BOOL, string/binary/datetime BYTES).
Requirements come from the directory's ``requirements.txt``; for the zero-code flavors ``mlflow``
itself is dropped from them (nothing imports it).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelyard.errors import PackageInvalid
from modelyard.package.build import build_package
from modelyard.package.manifest import Signature
from modelyard.package.requirements import parse_requirements_file, requirement_name
from modelyard.sdk import TensorSpec

__all__ = ["PYFUNC_ENTRY", "MlflowPyfuncModel", "import_mlflow", "read_mlmodel", "signature_from_mlmodel"]

PYFUNC_ENTRY = "modelyard.package.mlflow:MlflowPyfuncModel"
_COLUMN_TYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
_MLFLOW_NAMES = {"mlflow", "mlflow-skinny"}
_INSTALL_HINT = "serving an MLflow python_function model needs mlflow: pip install 'modelyard[mlflow]'"


def read_mlmodel(directory: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of an MLflow model directory."""
    path = Path(directory) / "MLmodel"
    if not path.is_file():
        raise PackageInvalid(
            f"{directory} is not an MLflow model directory: no MLmodel file", field="MLmodel"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PackageInvalid(f"MLmodel is not valid YAML: {exc}", field="MLmodel") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise PackageInvalid("MLmodel has no 'flavors' mapping", field="MLmodel")
    return data


def _schema(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise PackageInvalid(f"MLmodel signature is not JSON: {exc}", field="MLmodel") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise PackageInvalid("MLmodel signature must be a list of column or tensor specs", field="MLmodel")
    return specs


def _tensor(spec: Mapping[str, Any], default_name: str) -> TensorSpec:
    name = str(spec.get("name") or default_name)
    if spec.get("type") == "tensor":
        tensor = spec.get("tensor-spec") or {}
        if not isinstance(tensor, Mapping):
            raise PackageInvalid(
                f"MLmodel signature tensor {name!r}: tensor-spec is not a mapping", field="MLmodel"
            )
        try:
            tensor_type = _numpy_datatype(str(tensor.get("dtype")))
            return TensorSpec(
                name=name, datatype=tensor_type, shape=[int(d) for d in tensor.get("shape", [-1])]
            )
        except (TypeError, ValueError) as exc:
            raise PackageInvalid(f"MLmodel signature tensor {name!r}: {exc}", field="MLmodel") from None
    datatype = _COLUMN_TYPES.get(str(spec.get("type")))
    if datatype is None:
        raise PackageInvalid(
            f"MLmodel signature column {name!r} has unsupported type {spec.get('type')!r}", field="MLmodel"
        )
    return TensorSpec(name=name, datatype=datatype, shape=[-1])


def _numpy_datatype(dtype: str) -> str:
    from modelyard.dtypes import datatype_of

    return "BYTES" if dtype in ("str", "object", "bytes") else datatype_of(np.empty(0, dtype=np.dtype(dtype)))


def signature_from_mlmodel(mlmodel: Mapping[str, Any]) -> tuple[Signature, bool]:
    """``(signature, column_based)`` from ``MLmodel``'s ``signature`` (empty when there is none)."""
    raw = mlmodel.get("signature") or {}
    if not isinstance(raw, Mapping):
        raise PackageInvalid(
            f"MLmodel signature must be a mapping of inputs and outputs, got {type(raw).__name__}",
            field="MLmodel",
        )
    inputs = _schema(raw.get("inputs"))
    outputs = _schema(raw.get("outputs"))
    column_based = any(spec.get("type") != "tensor" for spec in inputs)
    return (
        Signature(
            inputs=[
                _tensor(spec, f"input{i}" if len(inputs) > 1 else "input") for i, spec in enumerate(inputs)
            ],
            outputs=[
                _tensor(spec, f"output{i}" if len(outputs) > 1 else "predict")
                for i, spec in enumerate(outputs)
            ],
        ),
        column_based,
    )


def _sklearn_signature(signature: Signature, column_based: bool) -> Signature:
    """What the zero-code scikit-learn runtime serves, sized from the MLflow signature."""
    if not signature.inputs:
        return Signature()
    width = len(signature.inputs) if column_based else (signature.inputs[0].shape[1:2] or [-1])[0]
    predict = signature.outputs[0].datatype if signature.outputs else "FP64"
    return Signature(
        inputs=[TensorSpec(name="input", datatype="FP64", shape=[-1, width])],
        outputs=[TensorSpec(name="predict", datatype=predict, shape=[-1])],
    )


def _requirements(directory: Path, keep_mlflow: bool) -> list[str]:
    path = directory / "requirements.txt"
    lines = parse_requirements_file(path) if path.is_file() else []
    if keep_mlflow:
        return lines
    return [line for line in lines if requirement_name(line.partition(";")[0]) not in _MLFLOW_NAMES]


def _served(directory: Path, flavors: Mapping[str, Any]) -> tuple[str, str]:
    """``("model_file" | "entry", value)`` for the best flavor (see the module docstring)."""
    onnx = flavors.get("onnx")
    if isinstance(onnx, dict) and onnx.get("data"):
        return "model_file", str(onnx["data"])
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict) and sklearn.get("serialization_format", "cloudpickle") in (
        "pickle",
        "cloudpickle",
    ):
        pickled = str(sklearn.get("pickled_model", "model.pkl"))
        if Path(pickled).suffix.lower() in (".pkl", ".pickle", ".joblib"):
            return "model_file", pickled
    if "python_function" in flavors:
        return "entry", PYFUNC_ENTRY
    raise PackageInvalid(
        f"MLmodel has no flavor modelyard can serve ({', '.join(map(str, flavors))})", field="MLmodel"
    )


def import_mlflow(
    directory: Path,
    out: Path | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    created_at: str | None = None,
) -> Path:
    """Package an MLflow model directory (see the module docstring); returns the package's path."""
    directory = Path(directory)
    mlmodel = read_mlmodel(directory)
    how, value = _served(directory, mlmodel["flavors"])
    signature, column_based = signature_from_mlmodel(mlmodel)
    labels = {
        "mlflow_flavor": "python_function"
        if how == "entry"
        else ("onnx" if value.endswith(".onnx") else "sklearn")
    }
    for key in ("model_uuid", "run_id", "mlflow_version"):
        if mlmodel.get(key):
            labels[f"mlflow_{key.removeprefix('mlflow_')}"] = str(mlmodel[key])
    if how == "entry":
        chosen: Signature | None = signature
    else:
        chosen = None if value.endswith(".onnx") else _sklearn_signature(signature, column_based)
    return build_package(
        directory, out, name=name or directory.resolve().name, version=version,
        entry=value if how == "entry" else None, model_file=value if how == "model_file" else None,
        requirements=_requirements(directory, keep_mlflow=how == "entry"),
        labels=labels, signature=chosen, created_at=created_at,
    )  # fmt: skip


class MlflowPyfuncModel:
    """An MLflow ``python_function`` model served through ``mlflow.pyfunc`` (imported on load)."""

    platform = "mlflow_pyfunc"

    def __init__(self, model_dir: str, signature: Mapping[str, Any] | None = None) -> None:
        self.model_dir = model_dir
        self.signature = Signature.model_validate(signature or {})
        self.model: Any = None
        self.column_based = False

    def load(self) -> None:
        """Import ``mlflow.pyfunc`` and load the model directory with it."""
        try:
            pyfunc = importlib.import_module("mlflow.pyfunc")
        except ImportError as exc:
            raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
        self.column_based = signature_from_mlmodel(read_mlmodel(Path(self.model_dir)))[1]
        self.model = pyfunc.load_model(self.model_dir)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the model's ``predict`` with a DataFrame (column signature), one array, or a dict."""
        if self.column_based:
            pandas = importlib.import_module("pandas")  # installed with mlflow
            data: Any = pandas.DataFrame({k: _decoded(v) for k, v in inputs.items()})
        elif len(inputs) == 1:
            data = next(iter(inputs.values()))
        else:
            data = inputs
        return self._outputs(self.model.predict(data))

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        names = [t.name for t in self.signature.outputs] or ["predict"]
        if isinstance(result, Mapping):
            return {str(k): np.asarray(v) for k, v in result.items()}
        columns = getattr(result, "columns", None)
        if columns is not None:  # a pandas DataFrame
            return {str(c): np.asarray(result[c]) for c in columns}
        return {names[0]: np.asarray(result)}


def _decoded(array: np.ndarray) -> Any:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.ravel()]
    return array.ravel() if array.ndim > 1 and array.shape[1:] == (1,) else array
