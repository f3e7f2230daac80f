"""What the validation-job tests share: a registry with a production version and a setup, small
ONNX models (the good candidate answers like production, the flipped one does not), and waiting
for a job to end."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np

from modelyard.package import build_package
from modelyard.registry import Registry
from modelyard.validation.job_store import JobStore
from modelyard.validation.jobs import JobRunner
from modelyard.validation.setup import JobView, SetupRequest
from tests.validation.conftest import features, linear


def models(folder: Path) -> dict[str, Path]:
    np.savez(folder / "rows.npz", x=features(200))
    return {
        "base": linear(folder / "base.onnx"),
        "good": linear(folder / "good.onnx", note="retrained"),
        "flip": linear(folder / "flip.onnx", sign=-1.0),
        "rows": folder / "rows.npz",
    }


_PYTHON_MODEL = """
import os
import signal
import time
from pathlib import Path

import modelyard
from modelyard import TensorSpec


@modelyard.model(
    name="spam", inputs=[TensorSpec("x", "FP32", [-1, 3])], outputs=[TensorSpec("y", "FP32", [-1, 2])]
)
class Misbehaving:
    def predict(self, inputs):
        Path({marker!r}).write_text(str(os.getpid()))
{body}
"""


def python_version(folder: Path, body: str) -> tuple[Path, Path]:
    """A package of a Python model whose predict writes its process id to a marker file, then runs
    ``body`` (``time.sleep(3600)``, ``os._exit(3)``...); the package and the marker."""
    source, marker = folder / "misbehaving", folder / "predict.pid"
    source.mkdir()
    code = _PYTHON_MODEL.format(marker=str(marker), body=textwrap.indent(body, " " * 8))
    (source / "model.py").write_text(code)
    return build_package(source, folder / "dist"), marker


def with_production(registry: Registry, files: dict[str, Path], **setup: object) -> JobStore:
    """spam/1 as production, and a setup for spam (push-triggered unless ``setup`` says otherwise)."""
    registry.push(files["base"], name="spam", aliases=["production"])
    store = JobStore(registry.engine)
    request = SetupRequest.model_validate({"dataset": str(files["rows"]), **setup})
    store.put_setup("spam", request, "ana")
    return store


def runner(registry: Registry, store: JobStore, name: str = "cp-test", **options: float) -> JobRunner:
    return JobRunner(store, registry, name=name, **options)  # type: ignore[arg-type]


def wait_for_job(store: JobStore, name: str, version: int, timeout: float = 30.0) -> JobView:
    """The job of ``name/version`` once it has ended (the newest such job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [job for job in store.list_jobs(name) if job.version == version]
        if found and found[0].status not in ("queued", "running"):
            return store.get_job(found[0].id)
        time.sleep(0.05)
    raise AssertionError(f"no job of {name}/{version} ended within {timeout} s: {store.list_jobs(name)}")
