"""Where a zero-code runtime runs: the ``device`` setting resolved for onnxruntime, PyTorch and the
CPU-only runtimes (docs/runtimes.md, "Devices").

``cpu`` (the default), ``cuda`` / ``cuda:N``, ``tensorrt`` / ``tensorrt:N`` (ONNX only) and ``auto``.
A device that was asked for and is not there is refused with an :class:`Unsupported` error naming
the field ``device`` and saying what is available: never a quiet fallback to the CPU. Only ``auto``
falls back, and says so. TensorRT is used only when asked for by name: onnxruntime-gpu lists its
provider whether or not the TensorRT libraries are installed, and a TensorRT engine takes minutes to
build at load time, so ``auto`` means CUDA.

Imports no model library itself: the runtimes pass in onnxruntime's provider list or the ``torch``
module, so the decisions here are plain functions of what the library reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, cast

from modelyard.errors import Unsupported
from modelyard.server.settings import DEVICE_PATTERN, DEVICES

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "TENSORRT_PROVIDER",
    "Device",
    "cpu_only",
    "onnx_providers",
    "onnx_session_device",
    "torch_device",
]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
# The GPU providers a device needs, in onnxruntime's priority order (the CPU's always comes last:
# it runs the nodes a GPU provider does not implement, which is placement, not a fallback).
_GPU_PROVIDERS = {"cuda": (CUDA_PROVIDER,), "tensorrt": (TENSORRT_PROVIDER, CUDA_PROVIDER)}
_GPU_INSTALL = (
    "pip install onnxruntime-gpu in place of onnxruntime (a CUDA build), with the CUDA and cuDNN libraries"
)

Provider = str | tuple[str, dict[str, Any]]
Kind = Literal["cpu", "cuda", "tensorrt", "auto"]


@dataclasses.dataclass(frozen=True)
class Device:
    """A parsed ``device`` setting: its kind and, for a GPU, the device index (``cuda`` is ``cuda:0``)."""

    kind: Kind
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> Device:
        """``cpu``, ``auto``, ``cuda[:N]``, ``tensorrt[:N]``; anything else is refused naming ``device``."""
        if not DEVICE_PATTERN.fullmatch(text):
            raise Unsupported(f"device {text!r} must be one of {DEVICES}", field="device")
        kind, _, index = text.partition(":")
        return cls(cast(Kind, kind), int(index or 0))

    @property
    def gpu(self) -> bool:
        return self.kind in ("cuda", "tensorrt")

    def __str__(self) -> str:
        return self.kind if not self.gpu else f"{self.kind}:{self.index}"


def _refused(device: Device, why: str, available: str) -> Unsupported:
    return Unsupported(f"device '{device}' is not available: {why}; available: {available}", field="device")


def cpu_only(device: Device, runtime: str) -> str:
    """The device of a runtime that computes on the CPU alone: ``cpu`` (for ``auto`` too), else refused."""
    if device.gpu:
        raise _refused(device, f"{runtime} models run on the CPU only", "cpu (or auto)")
    return "cpu"


# -- onnxruntime -----------------------------------------------------------------------------------


def onnx_providers(device: Device, available: Sequence[str]) -> list[Provider]:
    """onnxruntime's providers for ``device``, given ``ort.get_available_providers()``.

    ``auto`` is ``cuda`` when this build has the CUDA provider, else ``cpu``. A GPU device whose
    provider this build lacks is refused, naming what it has.
    """
    if device.kind == "auto":
        return onnx_providers(Device("cuda"), available) if CUDA_PROVIDER in available else [CPU_PROVIDER]
    if not device.gpu:
        return [CPU_PROVIDER]
    missing = [name for name in _GPU_PROVIDERS[device.kind] if name not in available]
    if missing:
        why = f"this onnxruntime build has no {' or '.join(missing)} ({_GPU_INSTALL})"
        raise _refused(device, why, ", ".join(available))
    options = {"device_id": device.index}
    return [*((name, dict(options)) for name in _GPU_PROVIDERS[device.kind]), CPU_PROVIDER]


def onnx_session_device(device: Device, providers: Sequence[Provider], used: Sequence[str]) -> str:
    """The device a session really runs on, given what it was asked (``providers``) and what it
    took (``session.get_providers()``).

    onnxruntime falls back to the CPU by itself, with a line on stderr, when a GPU provider listed
    in its build cannot start (no driver, no cuDNN, no TensorRT libraries, a bad index): here that is
    an error, unless the device was ``auto``.
    """
    wanted = [p if isinstance(p, str) else p[0] for p in providers if p != CPU_PROVIDER]
    if not wanted:
        return "cpu"
    index = next(p[1]["device_id"] for p in providers if not isinstance(p, str))
    if all(name in used for name in wanted):
        return f"{'tensorrt' if TENSORRT_PROVIDER in wanted else 'cuda'}:{index}"
    if device.kind == "auto":
        return "cpu"
    failed = [name for name in wanted if name not in used]
    why = (
        f"onnxruntime could not start {' or '.join(failed)} (the session got {', '.join(used)});"
        " check the GPU index, the driver and the CUDA, cuDNN (and TensorRT) libraries"
    )
    raise _refused(device, why, ", ".join(used))


# -- PyTorch ---------------------------------------------------------------------------------------


def torch_device(torch: Any, device: Device) -> str:
    """The ``torch.device`` string for ``device``: ``cpu`` or ``cuda:N``; ``auto`` is ``cuda:0`` when
    ``torch.cuda.is_available()``, else ``cpu``. TensorRT is refused: it is an ONNX device here."""
    if device.kind == "cpu":
        return "cpu"
    if device.kind == "tensorrt":
        raise _refused(device, "TensorRT serves ONNX models; PyTorch models take cuda", "cpu, cuda, auto")
    if not torch.cuda.is_available():
        if device.kind == "auto":
            return "cpu"
        cpu_build = getattr(torch.version, "cuda", None) is None
        build = (
            "a CPU build" if cpu_build else "a CUDA build that sees no GPU (driver, CUDA_VISIBLE_DEVICES?)"
        )
        why = f"torch.cuda.is_available() is False (torch {torch.__version__} is {build})"
        raise _refused(device, why, "cpu")
    count = int(torch.cuda.device_count())
    if device.kind == "auto":
        return "cuda:0"
    if device.index >= count:
        why = f"{count} CUDA device{'s' if count != 1 else ''} visible"
        raise _refused(device, why, ", ".join(["cpu", *(f"cuda:{i}" for i in range(count))]))
    return f"cuda:{device.index}"
