"""``resources.gpu`` on the local target: the replica's command line asks for ``--device cuda``, and on
a host with several GPUs each replica gets its own ``CUDA_VISIBLE_DEVICES``. Checked on the command
line and environment the target builds; no process is started and no GPU is needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.deploy.spec import VersionSpec
from modelyard.deploy.targets.gpus import host_gpus, replica_gpus
from modelyard.deploy.targets.local import LocalTarget, _launch_key

KEY = ("vision", "detector", "v1")


def spec(gpu: int, **server: object) -> VersionSpec:
    return VersionSpec.model_validate(
        {"uri": "detector/1", "weight": 1, "resources": {"gpu": gpu}, "server": server}
    )


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalTarget]:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with LocalTarget(ControlSettings(home=tmp_path / "home")) as target:
        yield target


def device_flag(argv: list[str]) -> str:
    return argv[argv.index("--device") + 1]


def test_gpus_ask_the_server_for_cuda_and_none_for_the_cpu(local: LocalTarget) -> None:
    assert device_flag(local._command(KEY, spec(gpu=1))) == "cuda"
    assert device_flag(local._command(KEY, spec(gpu=0))) == "cpu"  # said, never inherited
    assert local._command(KEY, spec(gpu=2))[-2:] == ["--", "detector/1"]  # the uri stays last


def test_changing_the_gpus_restarts_the_replicas() -> None:
    assert _launch_key(spec(gpu=1)) != _launch_key(spec(gpu=0))
    assert _launch_key(spec(gpu=1)) == _launch_key(spec(gpu=1))


def test_each_replica_sees_its_own_gpus(local: LocalTarget) -> None:
    local.home_env["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"
    one = [local._environment(spec(gpu=1), replica)["CUDA_VISIBLE_DEVICES"] for replica in range(6)]
    assert one == ["0", "1", "2", "3", "0", "1"]  # round robin by replica number
    two = [local._environment(spec(gpu=2), replica)["CUDA_VISIBLE_DEVICES"] for replica in range(3)]
    assert two == ["0,1", "2,3", "0,1"]
    # No more GPUs than a replica asks for: it sees them all, as set for the target.
    assert local._environment(spec(gpu=4), 1)["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    # The spec's own setting wins over the share-out; a CPU replica is left as it was.
    assert (
        local._environment(spec(gpu=1, env={"CUDA_VISIBLE_DEVICES": "3"}), 0)["CUDA_VISIBLE_DEVICES"] == "3"
    )
    assert local._environment(spec(gpu=0), 1)["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


def test_one_gpu_or_none_is_left_alone(local: LocalTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelyard.deploy.targets.local.host_gpus", lambda env: ["0"])
    assert "CUDA_VISIBLE_DEVICES" not in local._environment(spec(gpu=1), 3)
    monkeypatch.setattr("modelyard.deploy.targets.local.host_gpus", lambda env: [])
    assert "CUDA_VISIBLE_DEVICES" not in local._environment(spec(gpu=1), 3)


def test_the_hosts_gpus(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert host_gpus({}, tmp_path) == ["0", "1", "2"]
    assert host_gpus({}, tmp_path / "missing") == []
    assert host_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a1, GPU-b2"}, tmp_path) == ["GPU-a1", "GPU-b2"]
    assert host_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}, tmp_path) == ["2"]  # CUDA stops there too
    assert host_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == []


def test_share_out() -> None:
    gpus = ["0", "1", "2", "3", "4"]
    assert [replica_gpus(gpus, 2, n) for n in range(3)] == ["0,1", "2,3", "0,1"]  # gpu 4 is spare
    assert replica_gpus(gpus, 0, 1) is None
    assert replica_gpus(gpus, 5, 1) is None
