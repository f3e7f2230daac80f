"""Which GPUs a local replica sees: with ``resources.gpu`` set, each replica of a version gets its own
``CUDA_VISIBLE_DEVICES`` when the host has more GPUs than one replica asks for (docs/deploy.md).

Kept simple on purpose: GPUs are shared out round robin by replica number, not reserved. Replica
``n`` of a version asking ``g`` GPUs gets the ``(n mod k)``-th group of ``g`` of the host's GPUs,
where ``k`` is how many whole groups there are; other versions, and the new replicas of a rolling
update while the old ones drain, may land on the same GPUs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["VISIBLE", "host_gpus", "replica_gpus"]

VISIBLE = "CUDA_VISIBLE_DEVICES"
_DEVICE_FILE = re.compile(r"nvidia[0-9]+")  # /dev/nvidia0, /dev/nvidia1... (not nvidiactl, nvidia-uvm)


def host_gpus(env: Mapping[str, str], dev: Path = Path("/dev")) -> list[str]:
    """The GPUs replicas may be given: ``CUDA_VISIBLE_DEVICES`` as set for the target (indices or
    UUIDs), else indices ``0..n-1`` for the ``n`` NVIDIA device files under ``dev``; none elsewhere."""
    visible = env.get(VISIBLE)
    if visible is not None:
        # CUDA stops at the first entry it cannot use; "-1" is the usual way to hide every GPU.
        found: list[str] = []
        for entry in (part.strip() for part in visible.split(",")):
            if not entry or entry.startswith("-"):
                break
            found.append(entry)
        return found
    try:
        count = sum(1 for name in os.listdir(dev) if _DEVICE_FILE.fullmatch(name))
    except OSError:
        return []
    return [str(index) for index in range(count)]


def replica_gpus(gpus: Sequence[str], per_replica: int, replica: int) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` for replica number ``replica``: its group of ``per_replica`` GPUs, or
    None (leave it as inherited) when the host has no more GPUs than one replica asks for."""
    if per_replica <= 0 or len(gpus) <= per_replica:
        return None
    groups = len(gpus) // per_replica
    start = (replica % groups) * per_replica
    return ",".join(gpus[start : start + per_replica])
