"""Tensor signatures: what a model takes and returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from modelyard.dtypes import DATATYPES

__all__ = ["ModelMetadata", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: an OIP datatype and a shape where -1 means "any size".

    Example: ``TensorSpec("x", "FP32", (-1, 512))`` is a batch of 512-wide float vectors.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __init__(self, name: str, datatype: str, shape: Iterable[int]) -> None:
        shape_t = tuple(int(d) for d in shape)
        if not name:
            raise ValueError("TensorSpec.name must be a non-empty string")
        if datatype not in DATATYPES:
            raise ValueError(f"TensorSpec '{name}': datatype {datatype!r} is not one of {sorted(DATATYPES)}")
        if any(d < -1 for d in shape_t):
            raise ValueError(f"TensorSpec '{name}': shape dimensions must be >= -1, got {list(shape_t)}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "datatype", datatype)
        object.__setattr__(self, "shape", shape_t)

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """True when ``shape`` matches this spec, -1 matching any size."""
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    """What a model says about itself. Empty ``inputs`` means "accept any named tensors"."""

    name: str
    version: str = "1"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    platform: str = "modelyard_python"
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"model name must be non-empty and contain no '/', got {self.name!r}")
        if not self.version or "/" in self.version:
            raise ValueError(f"model version must be non-empty and contain no '/', got {self.version!r}")
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"model '{self.name}': duplicate {kind} names in {names}")
