"""The gateway in front of real model servers, all real processes, driven by the CLI and the SDK.

Two ``modelyard serve`` processes serve two different ONNX models as versions v1 and v2 of
mail/spam; ``modelyard route`` sets an 80/20 split; ``modelyard gateway serve --workers 2`` routes.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

import modelyard
from modelyard._process import announced_url
from tests.support import linear_onnx

CLI = str(Path(sys.executable).with_name("modelyard"))

pytestmark = pytest.mark.slow


class Processes:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> str:
        proc = subprocess.Popen(
            [CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )
        self.started.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            url = announced_url(line) or announced_url(line, "gateway")
            if url:
                return url
        raise AssertionError(f"{args} did not start: {proc.stderr.read() if proc.stderr else ''}")

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [CLI, *args], capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def stop_all(self) -> list[int | None]:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.started:
            try:
                codes.append(proc.wait(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    for name in ("MODELYARD_REGISTRY_URL", "MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_DB"):
        env.pop(name, None)
    created = Processes(env)
    try:
        yield created
    finally:
        created.stop_all()


def test_real_model_servers_behind_the_gateway_split_pin_and_sdk(procs: Processes, tmp_path: Path) -> None:
    models = {}
    for version, seed in (("v1", 3), ("v2", 4)):
        folder = tmp_path / version
        folder.mkdir()
        models[version] = linear_onnx(folder / "spam.onnx", seed=seed)
    urls = {
        v: procs.start("serve", str(path), "--port", "0", "--log-level", "warning")
        for v, path in models.items()
    }
    procs.run("route", "set", "mail/spam", "v1=80", "v2=20")
    for version, url in urls.items():
        procs.run("route", "replicas", "mail/spam", version, url)
    gateway = procs.start("gateway", "serve", "--port", "0", "--workers", "2", "--refresh-interval", "0.1")

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = {v: ort.InferenceSession(str(p)).run(None, {"x": x})[0] for v, p in models.items()}
    with modelyard.Client(gateway, trust_env=False) as client:
        pinned = client.predict("mail/spam", {"x": x}, version="v2")
        np.testing.assert_allclose(pinned["y"], expected["v2"], rtol=1e-6)
        answered = client.predict("mail/spam", {"x": x})["y"]
        assert any(np.allclose(answered, out, rtol=1e-6) for out in expected.values())

    versions: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=gateway, timeout=30, trust_env=False) as http:
        for _ in range(100):
            response = http.post("/projects/mail/models/spam:predict", json={"instances": x.tolist()})
            assert response.status_code == 200, response.text
            version = response.headers["x-modelyard-route-version"]
            np.testing.assert_allclose(response.json()["predictions"], expected[version], rtol=1e-6)
            versions[version] += 1
        meta = http.get("/projects/mail/models/spam/versions/v1").json()
        assert meta["name"] == "spam"
        assert [i["name"] for i in meta["inputs"]] == ["x"]
    assert 18 <= versions["v2"] <= 22, versions  # each worker splits exactly per window of 5
    assert procs.stop_all() == [0, 0, 0]
