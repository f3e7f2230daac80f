"""The whole platform from the command line: `modelyard up`, `modelyard deploy apply`, traffic.

Real processes throughout: the control plane (registry, routes, deploy API, local backend), the
gateway's workers, and `modelyard serve` replicas of two different ONNX models.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from modelyard._process import announced_url
from tests.support import linear_onnx, processes_with_env

CLI = str(Path(sys.executable).with_name("modelyard"))
ROUTING_CONVERGES_S = 1.0  # the gateway's promise for a routing change (docs/gateway.md)
pytestmark = pytest.mark.slow
# These deploy files name .onnx files by their paths, not registry references: only allowed so.
LOCAL_PATHS = ["--allow-local-paths"]

DEPLOY = """deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {{uri: {v1}, replicas: 2, weight: 80}}
  - version: v2
    spec: {{uri: {v2}, replicas: 1, weight: 20}}
"""


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    for name in ("MODELYARD_REGISTRY_URL", "MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_DB"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [CLI, "up", "--port", "0", "--gateway-port", "0", "--gateway-workers", "2", *LOCAL_PATHS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        pairs = zip(lines, ("control", "gateway"), strict=True)
        urls = [url for line, who in pairs if (url := announced_url(line, who))]
        assert len(urls) == 2, (lines, proc.stderr.read() if proc.stderr else "")
        yield {**env, "MODELYARD_CONTROL_URL": urls[0]}, urls[0], urls[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "home")], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "replicas outlived modelyard up"


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def cli(env: dict[str, str], *args: str, expect: int = 0) -> str:
    result = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert result.returncode == expect, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def split(
    gateway: str, x: np.ndarray, expected: dict[str, np.ndarray], n: int = 100
) -> collections.Counter[str]:
    # Every caller here has just changed the routing table; each gateway worker picks a change up
    # within a second (tests/gateway/test_workers.py pins that), and a split counted before both
    # had would mix the old weights in (or 404 on a first route).
    time.sleep(ROUTING_CONVERGES_S)
    seen: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=gateway, timeout=30, trust_env=False) as http:
        for _ in range(n):
            response = http.post("/projects/mail/models/spam:predict", json={"instances": x.tolist()})
            assert response.status_code == 200, response.text
            version = response.headers["x-modelyard-route-version"]
            np.testing.assert_allclose(response.json()["predictions"], expected[version], rtol=1e-5)
            seen[version] += 1
    return seen


def test_up_apply_split_then_update_and_roll_back(
    platform: tuple[dict[str, str], str, str], tmp_path: Path
) -> None:
    env, _, gateway = platform
    models = {v: linear_onnx(tmp_path / f"{v}.onnx", seed=seed) for v, seed in (("v1", 3), ("v2", 4))}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = {v: ort.InferenceSession(str(p)).run(None, {"x": x})[0] for v, p in models.items()}
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(DEPLOY.format(v1=models["v1"], v2=models["v2"]))

    assert "2 to add" in cli(env, "deploy", "diff", str(deploy))
    applied = cli(env, "deploy", "apply", str(deploy))
    assert "routing: v1=80, v2=20" in applied
    seen = split(gateway, x, expected)
    assert 78 <= seen["v1"] <= 82, seen  # exact per worker and window of 5; two workers share the load
    assert "0 to add, 0 to update, 0 to delete, 2 unchanged" in cli(env, "deploy", "diff", str(deploy))
    assert "apply #2: done (0 to add" in cli(env, "deploy", "apply", str(deploy))  # idempotent

    # A change behind the file's back (over HTTP: env names the control plane): diff shows it
    # against the live routing table, and apply says it overwrites it.
    cli(env, "route", "set", "mail/spam", "v1=50", "v2=50")
    drift = "mail/spam: weights changed live since the last apply (v1 80 -> 50, v2 20 -> 50)"
    diffed = cli(env, "deploy", "diff", str(deploy))
    assert f"{drift}; apply overwrites them" in diffed
    assert "0 to add, 2 to update, 0 to delete, 0 unchanged" in diffed
    assert f"{drift}; apply overwrites them" in cli(env, "deploy", "apply", str(deploy))
    assert 78 <= split(gateway, x, expected)["v1"] <= 82

    deploy.write_text(
        DEPLOY.format(v1=models["v1"], v2=models["v2"]).replace("80}", "50}").replace("20}", "50}")
    )
    assert "+ weight: 50" in cli(env, "deploy", "diff", str(deploy))
    cli(env, "deploy", "apply", str(deploy))
    seen = split(gateway, x, expected)
    assert 48 <= seen["v2"] <= 52, seen
    cli(env, "deploy", "rollback", "1")
    assert "rollback to #1" in cli(env, "deploy", "history")
    assert 18 <= split(gateway, x, expected)["v2"] <= 22
    status = cli(env, "deploy", "status")
    assert status.count(": ready http://") == 3


def test_a_broken_version_fails_the_apply_and_leaves_traffic_alone(
    platform: tuple[dict[str, str], str, str], tmp_path: Path
) -> None:
    env, _, gateway = platform
    good = linear_onnx(tmp_path / "good.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(
        DEPLOY.format(v1=good, v2=good)
        .replace("weight: 80", "weight: 100")
        .replace("weight: 20", "weight: 0")
    )
    cli(env, "deploy", "apply", str(deploy))
    deploy.write_text(DEPLOY.format(v1=good, v2=broken))
    failed = cli(env, "deploy", "apply", str(deploy), expect=1)
    assert "v2 FAILED" in failed
    x = np.ones((1, 3), dtype=np.float32)
    expected = {"v1": ort.InferenceSession(str(good)).run(None, {"x": x})[0]}
    assert split(gateway, x, expected, n=30) == {"v1": 30}  # the broken v2 never got traffic
    assert "failed" in cli(env, "deploy", "history")


def test_children_stop_when_modelyard_up_is_killed_outright(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    env = {**os.environ, "MODELYARD_HOME": home}
    for name in ("MODELYARD_REGISTRY_URL", "MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_DB"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [CLI, "up", "--port", "0", "--gateway-port", "0", "--gateway-workers", "2", *LOCAL_PATHS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        control = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        proc.stdout.readline()
        deploy = tmp_path / "deploy.yaml"
        model = linear_onnx(tmp_path / "m.onnx")
        deploy.write_text(DEPLOY.format(v1=model, v2=model).replace("replicas: 2", "replicas: 1"))
        cli({**env, "MODELYARD_CONTROL_URL": control}, "deploy", "apply", str(deploy))
        children = processes_with_env("MODELYARD_HOME", home)
        assert len(children) >= 5  # gateway supervisor + 2 workers + 2 replicas
        proc.kill()  # no chance to stop anything
        proc.wait()
        assert wait_until(lambda: not processes_with_env("MODELYARD_HOME", home), 30), processes_with_env(
            "MODELYARD_HOME", home
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in processes_with_env("MODELYARD_HOME", home):
            os.kill(pid, signal.SIGKILL)
