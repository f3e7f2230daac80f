"""Serve a PyTorch model with no code: TorchScript (``.pt``, ``.pth``, ``.ts``) or ``torch.export`` ``.pt2``.

Signatures:

- a ``torch.export`` program records its inputs: their names, dtypes and shapes are read from the
  graph (symbolic dimensions become -1), and so are its outputs, named ``output0``, ``output1``...
  (or by key when ``forward`` returns a dict);
- a TorchScript module records no shapes or dtypes, so it declares no signature: the server
  accepts any named tensors. They are passed to ``forward`` by keyword when every name is one of
  ``forward``'s parameters, else positionally in the order the request gives them.

Results: a tensor is ``output0``; a tuple or list is ``output0``..``outputN``; a dict keeps its keys.
Everything runs under :func:`torch.inference_mode`, on the ``device`` asked for (``runtimes/devices.py``):
the module is loaded there and request tensors are moved there; results come back as CPU arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.runtimes.devices import Device, torch_device
from modelyard.sdk import ModelMetadata, TensorSpec

__all__ = ["TorchModel", "torch_datatype"]

log = logging.getLogger("modelyard.runtimes")

_INSTALL_HINT = "serving PyTorch models needs torch: pip install 'modelyard[torch]'"

_TORCH_TYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "bfloat16": "BF16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return torch


def torch_datatype(dtype: Any) -> str:
    """The OIP datatype name of a ``torch.dtype`` (``torch.float32`` -> ``FP32``)."""
    key = str(dtype).removeprefix("torch.")
    try:
        return _TORCH_TYPES[key]
    except KeyError:
        raise ValueError(f"torch dtype {key} is not supported") from None


def _dims(shape: Any) -> list[int]:
    # Symbolic sizes (torch.SymInt, not an int) are variable: -1.
    return [d if isinstance(d, int) else -1 for d in shape]


def _named(result: Any, leaves: list[Any]) -> list[tuple[str, Any]]:
    """Name a model's results: a dict keeps its keys, anything else is ``output0``..``outputN``."""
    if isinstance(result, Mapping):
        return [(str(key), value) for key, value in result.items()]
    return [(f"output{i}", value) for i, value in enumerate(leaves)]


class TorchModel:
    """A TorchScript module or exported program served as a model class (stacked, batched)."""

    def __init__(
        self, path: str, name: str, version: str = "1", intra_op_threads: int = 1, device: str = "cpu"
    ) -> None:
        self.path = path
        self.name = name
        self.version = version
        self.intra_op_threads = intra_op_threads
        self.device = "cpu"  # where it runs, once loaded: cpu or cuda:N
        self._asked = device  # cpu, cuda[:N] or auto
        self.exported = Path(path).suffix.lower() == ".pt2"
        self.module: Any = None
        self._torch: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        self._constants: dict[int, Any] = {}  # leaf position -> value, for non-tensor inputs
        self._in_spec: Any = None
        self._parameters: list[str] = []

    def load(self) -> None:
        """Load on the device asked for (a GPU that is not there is refused, naming ``device``); sets
        torch's (process-wide) intra-op thread count when it is > 0."""
        torch = self._torch = _import_torch()
        asked = Device.parse(self._asked)
        self.device = torch_device(torch, asked)
        if asked.kind == "auto":
            why = "" if self.device != "cpu" else " (torch.cuda.is_available() is False)"
            log.info("model %s: device auto: runs on %s%s", self.name, self.device, why)
        if self.intra_op_threads > 0:
            torch.set_num_threads(self.intra_op_threads)
        if self.exported:
            self._load_program(torch)
        else:
            self._load_script(torch)

    def metadata(self) -> ModelMetadata:
        """The exported program's signature; none for TorchScript (any named tensors are accepted)."""
        labels = {"format": "torch.export" if self.exported else "torchscript", "device": self.device}
        if self._parameters:
            labels["forward_parameters"] = ",".join(self._parameters)
        return ModelMetadata(
            name=self.name,
            version=self.version,
            inputs=self._inputs,
            outputs=self._outputs,
            platform="pytorch_export" if self.exported else "pytorch_torchscript",
            labels=labels,
        )

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``forward`` on a batch; returns the named outputs as numpy arrays."""
        torch = self._torch
        with torch.inference_mode():
            if self.exported:
                result = self._call_program(inputs)
            elif inputs and all(name in self._parameters for name in inputs):
                result = self.module(**{n: self._tensor(n, a) for n, a in inputs.items()})
            else:
                result = self.module(*(self._tensor(n, a) for n, a in inputs.items()))
            leaves = torch.utils._pytree.tree_leaves(result)
            return {name: self._array(value) for name, value in _named(result, leaves)}

    def warmup(self) -> None:
        """For an exported program, one example of zeros with every variable dimension set to 1."""
        from modelyard.dtypes import numpy_dtype

        if not self.exported:
            return  # nothing says what a TorchScript module takes
        example = {
            spec.name: np.zeros([1 if d < 0 else d for d in spec.shape], dtype=numpy_dtype(spec.datatype))
            for spec in self._inputs
        }
        self.predict(example)

    # -- loading -----------------------------------------------------------------------------

    def _load_script(self, torch: Any) -> None:
        try:
            module = torch.jit.load(self.path, map_location=self.device)
        except RuntimeError as exc:
            raise ValueError(
                f"{self.path} is not a TorchScript archive ({exc}). Save one with "
                "torch.jit.script(model).save(path), or export with torch.export and save as .pt2"
            ) from exc
        module.eval()
        schema = getattr(getattr(module, "forward", None), "schema", None)
        arguments = list(schema.arguments)[1:] if schema is not None else []  # [0] is self
        self._parameters = [str(argument.name) for argument in arguments]
        self.module = module

    def _load_program(self, torch: Any) -> None:
        program = torch.export.load(self.path)
        if self.device != "cpu":
            program = _on_device(program, self.device)
        graph_signature = program.graph_signature
        values = {node.name: node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder"}
        inputs: list[TensorSpec] = []
        for position, spec in enumerate(
            s for s in graph_signature.input_specs if s.kind.name == "USER_INPUT"
        ):
            value = values.get(spec.arg.name)
            if isinstance(value, torch.Tensor):
                inputs.append(TensorSpec(spec.arg.name, torch_datatype(value.dtype), _dims(value.shape)))
            else:  # a constant the program was specialised on: pass it back as it was
                self._constants[position] = getattr(spec.arg, "value", value)
        self._inputs = tuple(inputs)
        self._outputs = self._program_outputs(program, torch)
        self._in_spec = getattr(getattr(program, "call_spec", None), "in_spec", None)
        self.module = program.module().to(self.device)

    def _program_outputs(self, program: Any, torch: Any) -> tuple[TensorSpec, ...]:
        """Output specs read from the graph, named as :meth:`predict` will name them."""
        output = next(node for node in program.graph.nodes if node.op == "output")
        values = {getattr(n, "name", None): getattr(n, "meta", {}).get("val") for n in output.args[0]}
        users = [s for s in program.graph_signature.output_specs if s.kind.name == "USER_OUTPUT"]
        found = [values.get(getattr(s.arg, "name", None)) for s in users]
        if not all(isinstance(value, torch.Tensor) for value in found):
            return ()  # constant or non-tensor outputs: declare none rather than guess
        out_spec = getattr(getattr(program, "call_spec", None), "out_spec", None)
        positions = list(range(len(found)))
        structure = (
            torch.utils._pytree.tree_unflatten(positions, out_spec) if out_spec is not None else positions
        )
        named = _named(structure, positions)
        if not all(isinstance(index, int) for _, index in named):
            named = [(f"output{i}", i) for i in positions]  # nested dicts: flat names
        return tuple(
            TensorSpec(name, _output_datatype(found[i].dtype), _dims(found[i].shape)) for name, i in named
        )

    # -- running -----------------------------------------------------------------------------

    def _call_program(self, inputs: dict[str, np.ndarray]) -> Any:
        tensors = iter([self._tensor(spec.name, inputs[spec.name], spec.datatype) for spec in self._inputs])
        count = len(self._inputs) + len(self._constants)
        leaves = [self._constants[i] if i in self._constants else next(tensors) for i in range(count)]
        if self._in_spec is None:
            return self.module(*leaves)
        args, kwargs = self._torch.utils._pytree.tree_unflatten(leaves, self._in_spec)
        return self.module(*args, **kwargs)

    def _tensor(self, name: str, array: np.ndarray, datatype: str | None = None) -> Any:
        """A tensor on the model's device; on the CPU it shares the request's memory (copied first
        when numpy marks it read-only)."""
        if array.dtype == object:
            raise InvalidInput(f"input '{name}' is BYTES; PyTorch models take numeric tensors", field=name)
        if not array.flags.writeable:
            array = array.copy()
        tensor = self._torch.from_numpy(array)
        if datatype == "BF16":  # BF16 arrives widened to float32
            tensor = tensor.to(self._torch.bfloat16)
        return tensor if self.device == "cpu" else tensor.to(self.device)

    def _array(self, value: Any) -> np.ndarray:
        if isinstance(value, self._torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.dtype == self._torch.bfloat16:  # numpy has no bfloat16
                tensor = tensor.float()
            array: np.ndarray = tensor.numpy()
            return array
        return np.asarray(value)


def _on_device(program: Any, device: str) -> Any:
    """The program moved to ``device``: its parameters, buffers and the devices written in its graph
    (``torch.export.passes.move_to_device_pass``, torch 2.6 and later); before that, only the module
    made from it is moved (parameters and buffers)."""
    try:
        from torch.export.passes import move_to_device_pass
    except ImportError:
        return program
    return move_to_device_pass(program, device)


def _output_datatype(dtype: Any) -> str:
    # bfloat16 results are returned widened to float32 (numpy has no bfloat16).
    datatype = torch_datatype(dtype)
    return "FP32" if datatype == "BF16" else datatype
