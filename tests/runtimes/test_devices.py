"""The ``device`` setting of the zero-code runtimes: CPU by default, a GPU only when it is there.

This machine has no GPU, and the onnxruntime and torch here are CPU builds: the refusals are tested
for real, and a CUDA-capable build is stood in for where a test says so. Tests that only hold on a
CPU build skip where the library in use can reach a GPU.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnxruntime as ort
import pytest
import torch

from modelyard.errors import InvalidInput, Unsupported
from modelyard.package.loading import spec_from_config
from modelyard.runtimes.devices import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    Device,
    onnx_providers,
    onnx_session_device,
    torch_device,
)
from modelyard.runtimes.onnx import OnnxModel
from modelyard.runtimes.torch import TorchModel
from modelyard.server import ModelConfig, Settings
from tests.runtimes.test_onnx import affine_model
from tests.runtimes.test_torch import Affine, script

CUDA_ONNX = CUDA_PROVIDER in ort.get_available_providers()
cpu_onnx_only = pytest.mark.skipif(CUDA_ONNX, reason="this onnxruntime has CUDA: it may well start")
cpu_torch_only = pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a GPU here")
# TorchScript is deprecated in recent PyTorch; serving it is still supported.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.* is deprecated:DeprecationWarning")


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    return affine_model(tmp_path / "affine.onnx")


@pytest.fixture
def runtime_log() -> Iterator[list[str]]:
    """The runtimes' log lines (their own handler: the server may have stopped propagation)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("modelyard.runtimes")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# -- the default -----------------------------------------------------------------------------------


def test_the_default_is_the_cpu_and_its_provider_alone(onnx_file: Path, serve: Any) -> None:
    assert (Settings().device, ModelConfig(path="m.onnx").device) == ("cpu", None)
    model = OnnxModel(path=str(onnx_file), name="affine")
    model.load()
    assert model.session.get_providers() == [CPU_PROVIDER]
    assert serve(onnx_file).get("/v2/models/affine").json()["parameters"]["labels"]["device"] == "cpu"


def test_an_unknown_device_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"device\s.*must be one of cpu, cuda"):
        Settings(device="gpu")
    with pytest.raises(ValueError, match=r"device\s.*must be one of"):
        ModelConfig(path="m.onnx", device="cuda:x")
    with pytest.raises(Unsupported, match="must be one of") as refused:
        Device.parse("cuda0")
    assert refused.value.field == "device"


# -- a GPU asked for on a machine without one -------------------------------------------------------


@cpu_onnx_only
def test_cuda_for_onnx_is_refused_before_loading_naming_device_and_what_there_is(onnx_file: Path) -> None:
    with pytest.raises(Unsupported) as refused:
        spec_from_config(ModelConfig(path=str(onnx_file), device="cuda"), Settings())
    assert refused.value.field == "device"
    message = refused.value.message
    assert "model 'affine': device 'cuda:0' is not available" in message
    assert f"available: {', '.join(ort.get_available_providers())}" in message
    with pytest.raises(Unsupported, match="TensorrtExecutionProvider"):
        spec_from_config(ModelConfig(path=str(onnx_file)), Settings(device="tensorrt"))


@cpu_onnx_only
def test_the_onnx_runtime_itself_refuses_cuda_at_load(onnx_file: Path) -> None:
    model = OnnxModel(path=str(onnx_file), name="affine", device="cuda:1")
    with pytest.raises(Unsupported, match=r"device 'cuda:1' is not available") as refused:
        model.load()
    assert refused.value.field == "device"
    assert model.session is None


@cpu_onnx_only
def test_serve_with_cuda_exits_2_naming_device(onnx_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", "serve", str(onnx_file), "--port", "0", "--device", "cuda"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "modelyard: model 'affine': device 'cuda:0' is not available" in done.stderr
    assert "serving on" not in done.stdout


@cpu_torch_only
def test_cuda_for_torch_is_refused_at_start_and_at_load(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    with pytest.raises(Unsupported, match=r"torch\.cuda\.is_available\(\) is False") as refused:
        spec_from_config(ModelConfig(path=str(path)), Settings(device="cuda"))
    assert refused.value.field == "device"
    model = TorchModel(path=str(path), name="affine", device="cuda")
    with pytest.raises(Unsupported, match=r"device 'cuda:0' is not available.*available: cpu"):
        model.load()
    assert model.module is None


def test_tensorrt_is_for_onnx_only(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    with pytest.raises(Unsupported, match="TensorRT serves ONNX models") as refused:
        TorchModel(path=str(path), name="affine", device="tensorrt").load()
    assert refused.value.field == "device"


def test_scikit_learn_refuses_a_gpu_and_runs_auto_on_the_cpu(tmp_path: Path, runtime_log: list[str]) -> None:
    path = tmp_path / "model.joblib"
    path.touch()  # nothing is loaded to build the spec
    with pytest.raises(Unsupported, match="scikit-learn models run on the CPU only") as refused:
        spec_from_config(ModelConfig(path=str(path), device="cuda:0"), Settings())
    assert refused.value.field == "device"
    spec = spec_from_config(ModelConfig(path=str(path)), Settings(device="auto"))
    assert "device" not in spec.init_kwargs
    assert "model model: device auto: runs on cpu (scikit-learn runs on the CPU only)" in runtime_log


def test_a_model_class_is_not_given_a_device(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text("class Mine:\n    def predict(self, inputs):\n        return inputs\n")
    with pytest.raises(InvalidInput, match="picks its own device") as refused:
        spec_from_config(ModelConfig(path=f"{source}:Mine", device="cuda"), Settings())
    assert refused.value.field == "device"
    # The server-wide setting is for its model files: a class beside them is left alone.
    assert (
        spec_from_config(ModelConfig(path=f"{source}:Mine"), Settings(device="cuda")).cls.__name__ == "Mine"
    )


# -- auto --------------------------------------------------------------------------------------------


@cpu_onnx_only
@cpu_torch_only
def test_auto_falls_back_to_the_cpu_and_says_so(
    onnx_file: Path, tmp_path: Path, serve: Any, runtime_log: list[str]
) -> None:
    client = serve(onnx_file, device="auto")
    assert client.get("/v2/models/affine").json()["parameters"]["labels"]["device"] == "cpu"
    config = client.get("/v2/models/affine/config").json()
    assert config["parameters"]["device"] == {"string_value": "cpu"}
    torch_client = serve(script(Affine(), tmp_path / "net.pt"), device="auto")
    assert torch_client.get("/v2/models/net").json()["parameters"]["labels"]["device"] == "cpu"
    said = [line for line in runtime_log if "device auto: runs on cpu" in line]
    assert [line.split(":")[0] for line in said] == ["model affine", "model net"]
    assert "providers in use: CPUExecutionProvider" in said[0]
    assert "torch.cuda.is_available() is False" in said[1]


# -- a CUDA-capable build, stood in for ----------------------------------------------------------------


def test_provider_lists_for_a_cuda_capable_build() -> None:
    gpu_build = [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_providers(Device.parse("cpu"), gpu_build) == [CPU_PROVIDER]
    assert onnx_providers(Device.parse("cuda:1"), gpu_build) == [
        (CUDA_PROVIDER, {"device_id": 1}),
        CPU_PROVIDER,
    ]
    assert onnx_providers(Device.parse("tensorrt"), gpu_build) == [
        (TENSORRT_PROVIDER, {"device_id": 0}),
        (CUDA_PROVIDER, {"device_id": 0}),
        CPU_PROVIDER,
    ]
    # auto never builds TensorRT engines: CUDA when the build has it, else the CPU.
    assert onnx_providers(Device.parse("auto"), gpu_build) == [
        (CUDA_PROVIDER, {"device_id": 0}),
        CPU_PROVIDER,
    ]
    assert onnx_providers(Device.parse("auto"), [CPU_PROVIDER]) == [CPU_PROVIDER]
    with pytest.raises(Unsupported, match=r"no TensorrtExecutionProvider \(.*available: CUDAExec"):
        onnx_providers(Device.parse("tensorrt:0"), [CUDA_PROVIDER, CPU_PROVIDER])


@cpu_onnx_only
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in:UserWarning")
def test_a_cuda_provider_that_does_not_start_is_an_error_not_a_cpu_fallback(
    onnx_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ort.get_available_providers`` is patched to stand in for onnxruntime-gpu, because no GPU is
    here. The session is then asked for CUDA, which this CPU build cannot start, and onnxruntime
    falls back to the CPU by itself, with a warning: what a GPU build does when the driver, cuDNN
    or the device index is wrong."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER])
    with pytest.raises(Unsupported, match="onnxruntime could not start CUDAExecutionProvider") as refused:
        OnnxModel(path=str(onnx_file), name="affine", device="cuda:2").load()
    assert refused.value.field == "device"
    assert "the session got CPUExecutionProvider" in refused.value.message
    auto = OnnxModel(path=str(onnx_file), name="affine", device="auto")
    auto.load()  # auto may fall back: it does, and runs
    assert (auto.device, auto.metadata().labels["device"]) == ("cpu", "cpu")


def test_the_device_a_session_reports() -> None:
    cuda = [(CUDA_PROVIDER, {"device_id": 2}), CPU_PROVIDER]
    assert onnx_session_device(Device.parse("cuda:2"), cuda, [CUDA_PROVIDER, CPU_PROVIDER]) == "cuda:2"
    assert onnx_session_device(Device.parse("auto"), cuda, [CPU_PROVIDER]) == "cpu"
    trt = [(TENSORRT_PROVIDER, {"device_id": 0}), (CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    used = [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_session_device(Device.parse("tensorrt"), trt, used) == "tensorrt:0"
    # TensorRT asked for by name and not started: CUDA alone is not what was asked.
    with pytest.raises(Unsupported, match="could not start TensorrtExecutionProvider"):
        onnx_session_device(Device.parse("tensorrt"), trt, used[1:])


def test_torch_devices_for_a_cuda_capable_build() -> None:
    """A stand-in ``torch`` that sees two GPUs, because no GPU is here."""
    fake = SimpleNamespace(
        __version__="2.x", version=SimpleNamespace(cuda="12.4"),
        cuda=SimpleNamespace(is_available=lambda: True, device_count=lambda: 2),
    )  # fmt: skip
    assert [torch_device(fake, Device.parse(d)) for d in ("cpu", "cuda", "cuda:1", "auto")] == [
        "cpu",
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    with pytest.raises(Unsupported, match=r"2 CUDA devices visible; available: cpu, cuda:0, cuda:1"):
        torch_device(fake, Device.parse("cuda:2"))
    fake.cuda.is_available = lambda: False
    with pytest.raises(Unsupported, match="a CUDA build that sees no GPU"):
        torch_device(fake, Device.parse("cuda"))
    assert torch_device(fake, Device.parse("auto")) == "cpu"
