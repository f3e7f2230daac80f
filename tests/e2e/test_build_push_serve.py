"""The whole path from the command line: build a package, push it, alias it, serve it by reference.

Every step is the real ``modelyard`` CLI in a subprocess, against a private local registry
(SQLite + a local artifact folder under ``MODELYARD_HOME``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from modelyard._process import announced_url
from tests.package.conftest import linear_onnx

CLI = str(Path(sys.executable).with_name("modelyard"))


def run(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def test_build_push_alias_then_serve_name_at_production(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    env.pop("MODELYARD_REGISTRY_URL", None)
    env.pop("MODELYARD_CONTROL_URL", None)
    source = tmp_path / "ranker"
    source.mkdir()
    linear_onnx(source / "ranker.onnx")
    run("build", str(source), "-o", str(tmp_path / "dist"), "--name", "ranker", "--version", "1.0", env=env)
    (package,) = (tmp_path / "dist").glob("*.modelyard")
    run("registry", "push", str(package), "--name", "ranker", env=env)  # version 1
    run("registry", "push", str(package), "--name", "ranker", env=env)  # version 2, same bytes
    run("registry", "alias", "ranker", "production", "1", env=env)

    proc = subprocess.Popen(
        [CLI, "serve", "ranker@production", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            url = announced_url(line) or ""
            if url:
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
            meta = http.get("/v2/models/ranker").json()
            assert meta["versions"] == ["1"]  # the registry's version number, not the package's "1.0"
            body = {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x.ravel().tolist()}]
            }
            answer = http.post("/v2/models/ranker/versions/1/infer", json=body)
        assert answer.status_code == 200, answer.text
        session = ort.InferenceSession(str(source / "ranker.onnx"), providers=["CPUExecutionProvider"])
        expected = session.run(["y"], {"x": x})[0]
        np.testing.assert_allclose(
            np.array(answer.json()["outputs"][0]["data"]).reshape(2, 2), expected, rtol=1e-6
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    # Pushing the same bytes twice stored them once.
    stored = [p for p in (tmp_path / "home" / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 1, stored


def test_an_unknown_reference_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    env.pop("MODELYARD_REGISTRY_URL", None)
    env.pop("MODELYARD_CONTROL_URL", None)
    result = subprocess.run(
        [CLI, "serve", "nobody@production", "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "nobody" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_registry_server_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [CLI, "serve", "ranker@production", "--control-url", "http://127.0.0.1:1", "--port", "0"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot reach the registry at http://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
