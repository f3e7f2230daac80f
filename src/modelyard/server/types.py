"""Transport-free request and response types of the inference data plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["InferenceRequest", "InferenceResponse"]


@dataclass
class InferenceRequest:
    """A decoded request: named input arrays plus what the protocol said about them.

    ``datatypes`` holds the datatype each input was declared with on the wire (OIP), when the
    protocol declares one; ``outputs`` lists the requested output names, None meaning all.
    """

    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str] = field(default_factory=dict)
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    timeout_s: float | None = None


@dataclass
class InferenceResponse:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
