"""The real ``modelyard`` command line in subprocesses: version, serving files, --name, --config, errors.

Each server is started with ``--port 0``; the test reads the one ``modelyard: serving on URL`` line
from its stdout (with a deadline), talks to it over HTTP, then stops it with SIGTERM and expects
exit code 0. Every subprocess is killed and waited for, whatever happens in the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import LinearRegression

import modelyard
from tests.support import AnnouncedProcess, linear_onnx

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).with_name("modelyard")  # the console script pip installed
CLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "modelyard.cli.main"]
START_TIMEOUT_S = 60.0  # the first start on a cold, busy 2-core machine can take a while
EXIT_TIMEOUT_S = 30.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

RNG = np.random.default_rng(7)


# -- models ------------------------------------------------------------------------------------


def regressor_joblib(path: Path) -> Path:
    """A LinearRegression fitted on random data (4 features), saved with joblib."""
    features = RNG.normal(size=(40, 4))
    target = features @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.25 + RNG.normal(scale=0.1, size=40)
    joblib.dump(LinearRegression().fit(features, target), path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "onnx": linear_onnx(folder / "scorer.onnx"),
        "sklearn": regressor_joblib(folder / "regressor.joblib"),
    }


# -- running the CLI ---------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command that must end by itself (a hang fails the test with TimeoutExpired)."""
    return subprocess.run(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=EXIT_TIMEOUT_S,
        check=False,
    )


def flat(text: str) -> str:
    """An error as one line: without rich's box drawing, colours and wrapping."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.sub(r"[│╭╮╰╯─]", " ", text)
    return " ".join(text.split())


class Server(AnnouncedProcess):
    """A ``modelyard serve ... --port 0`` subprocess and the URL it announced."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        argv = [*CLI, "serve", *args, "--port", "0", "--log-level", "warning"]
        super().__init__(argv, cwd / f"serve-stderr-{time.monotonic_ns()}.txt", cwd=cwd, env=ENV)

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> str:
        return super().wait_until_serving(timeout)

    def stop(self) -> int:
        """SIGTERM, then the exit code (the default drain_grace_s is 0: it stops at once)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=EXIT_TIMEOUT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=EXIT_TIMEOUT_S)


@contextlib.contextmanager
def serving(args: list[str], cwd: Path) -> Iterator[tuple[Server, httpx.Client]]:
    """A started server and an HTTP client on its URL; the process is always killed and reaped."""
    server = Server(args, cwd)
    try:
        server.wait_until_serving()
        # trust_env=False: a proxy from the environment must not sit between the test and 127.0.0.1
        with httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as client:
            yield server, client
    finally:
        server.close()


def infer(client: httpx.Client, url: str, name: str, array: np.ndarray, datatype: str) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}
        ]
    }
    response = client.post(url, json=body)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def outputs_by_name(doc: dict[str, Any]) -> dict[str, Any]:
    return {out["name"]: out for out in doc["outputs"]}


def onnx_expected(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["y"], {"x": x})[0]
    return result


# -- tests -------------------------------------------------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run_cli("version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == modelyard.__version__


def test_serve_two_files_names_each_by_its_stem_and_infers_both(
    models: dict[str, Path], tmp_path: Path
) -> None:
    onnx_path, sklearn_path = models["onnx"], models["sklearn"]
    with serving([str(onnx_path), str(sklearn_path)], tmp_path) as (server, client):
        response = client.get("/v2")
        assert response.status_code == 200, response.text
        meta = response.json()
        assert meta["name"] == "modelyard"
        assert meta["version"] == modelyard.__version__
        assert isinstance(meta["extensions"], list)

        for stem, platform in (("scorer", "onnxruntime_onnx"), ("regressor", "sklearn_sklearn")):
            response = client.get(f"/v2/models/{stem}")
            assert response.status_code == 200, response.text
            doc = response.json()
            assert doc["name"] == stem
            assert doc["versions"] == ["1"]
            assert doc["platform"] == platform
        assert client.get("/v2/models/scorer.onnx").status_code == 404  # the stem, not the file name

        x = RNG.normal(size=(3, 3)).astype(np.float32)
        expected = onnx_expected(onnx_path, x)
        doc = infer(client, "/v2/models/scorer/infer", "x", x, "FP32")
        assert (doc["model_name"], doc["model_version"]) == ("scorer", "1")
        y = outputs_by_name(doc)["y"]
        assert y["datatype"] == "FP32"
        assert y["shape"] == list(expected.shape)
        np.testing.assert_allclose(y["data"], expected.ravel(), rtol=1e-6, atol=1e-6)

        rows = RNG.normal(size=(4, 4))
        expected = joblib.load(sklearn_path).predict(rows)
        doc = infer(client, "/v2/models/regressor/infer", "input", rows, "FP64")
        assert (doc["model_name"], doc["model_version"]) == ("regressor", "1")
        predict = outputs_by_name(doc)["predict"]
        assert predict["shape"] == [4]
        np.testing.assert_allclose(predict["data"], expected, rtol=1e-9, atol=1e-12)

        assert server.stop() == 0, server.stderr()


def test_name_and_model_version_rename_a_single_model(models: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = models["onnx"]
    args = [str(onnx_path), "--name", "custom", "--model-version", "7"]
    with serving(args, tmp_path) as (server, client):
        response = client.get("/v2/models/custom")
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "custom"
        assert response.json()["versions"] == ["7"]
        assert client.get("/v2/models/custom/versions/7").status_code == 200
        assert client.get("/v2/models/custom/versions/1").status_code == 404
        assert client.get("/v2/models/scorer").status_code == 404  # the stem is no longer served

        x = RNG.normal(size=(2, 3)).astype(np.float32)
        doc = infer(client, "/v2/models/custom/versions/7/infer", "x", x, "FP32")
        assert (doc["model_name"], doc["model_version"]) == ("custom", "7")
        np.testing.assert_allclose(
            outputs_by_name(doc)["y"]["data"], onnx_expected(onnx_path, x).ravel(), rtol=1e-6, atol=1e-6
        )
        assert server.stop() == 0, server.stderr()


def test_name_with_two_paths_is_refused(tmp_path: Path) -> None:
    # The files need not exist: --name is checked first, so any other failure would be the wrong one.
    result = run_cli("serve", "a.onnx", "b.joblib", "--name", "custom", "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    message = flat(result.stderr)
    assert "--name" in message, result.stderr
    assert "not found" not in message, result.stderr


def test_model_version_with_two_paths_is_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "a.onnx", "b.joblib", "--model-version", "3", "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "--model-version" in flat(result.stderr), result.stderr


def test_a_model_that_fails_to_load_is_logged_and_reported_by_the_probes(
    models: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with serving([str(models["onnx"]), str(broken)], tmp_path) as (server, http):
        assert http.get("/health/live").status_code == 200
        assert http.get("/health/startup").status_code == 503
        assert http.get("/v2/health/ready").status_code == 503
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
        assert index["broken"]["state"] == "FAILED"
        assert index["broken"]["reason"]
        assert index[models["onnx"].stem]["state"] == "READY"  # the good model still serves
        assert server.stop() == 0
        log = server.stderr()
    assert "model broken version 1 failed to load" in log, log
    assert "is ready" not in log, log  # info records are below the --log-level warning used here


def test_config_file_serves_models_under_the_configured_names_and_versions(
    models: dict[str, Path], tmp_path: Path
) -> None:
    onnx_path = models["onnx"]
    config = {
        "server_name": "yard-under-test",
        "max_queue": 3,
        "port": 1,  # the --port 0 flag must win over the file
        "models": [
            {
                "path": str(onnx_path),
                "name": "ranker",
                "version": "3",
                "max_batch_size": 8,
                "max_latency_ms": 5,
            },
            {"path": str(onnx_path), "name": "ranker", "version": "10"},
        ],
    }
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    with serving(["--config", str(config_path)], tmp_path) as (server, client):
        assert httpx.URL(server.url).port not in (None, 1)
        assert client.get("/v2").json()["name"] == "yard-under-test"

        for version in ("3", "10"):
            response = client.get(f"/v2/models/ranker/versions/{version}")
            assert response.status_code == 200, response.text
            assert response.json()["name"] == "ranker"
        assert client.get("/v2/models/ranker").json()["versions"] == ["3", "10"]  # numeric order
        assert client.get("/v2/models/ranker/versions/1").status_code == 404
        assert client.get("/v2/models/scorer").status_code == 404

        # Per-model batching from the file; the second entry falls back to the server defaults.
        batching = client.get("/v2/models/ranker/versions/3/config").json()
        assert batching["max_batch_size"] == 8
        assert batching["dynamic_batching"] == {"max_queue_delay_microseconds": 5000}
        assert client.get("/v2/models/ranker/versions/10/config").json()["max_batch_size"] == 64

        x = RNG.normal(size=(1, 3)).astype(np.float32)
        doc = infer(client, "/v2/models/ranker/versions/3/infer", "x", x, "FP32")
        assert (doc["model_name"], doc["model_version"]) == ("ranker", "3")
        np.testing.assert_allclose(
            outputs_by_name(doc)["y"]["data"], onnx_expected(onnx_path, x).ravel(), rtol=1e-6, atol=1e-6
        )
        assert server.stop() == 0, server.stderr()


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"max_queue": 3, "bogus_key": 1}, "bogus_key"),
        ({"models": [{"path": "m.onnx", "nmae": "typo"}]}, "nmae"),
        ({"max_queue": 0, "models": [{"path": "m.onnx"}]}, "max_queue"),
    ],
    ids=["unknown-setting", "unknown-model-key", "invalid-value"],
)
def test_a_bad_config_exits_non_zero_naming_the_key(
    config: dict[str, Any], named: str, tmp_path: Path
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")  # exists, so only the config can be at fault
    config_path = tmp_path / "bad.yaml"
    config_path.write_text(json.dumps(config))
    result = run_cli("serve", "--config", str(config_path), "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    assert named in flat(result.stderr), result.stderr


def test_a_missing_model_file_exits_non_zero_naming_it(models: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "missing.onnx"
    result = run_cli("serve", str(models["onnx"]), str(missing), "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    assert str(missing) in result.stderr, result.stderr


def test_an_unknown_file_format_exits_non_zero_naming_the_file(tmp_path: Path) -> None:
    unknown = tmp_path / "weights.txt"
    unknown.write_text("not a model")
    result = run_cli("serve", str(unknown), "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    assert str(unknown) in result.stderr, result.stderr


def test_the_same_name_and_version_twice_exits_non_zero(models: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / models["onnx"].name
    copy.parent.mkdir()
    copy.write_bytes(models["onnx"].read_bytes())
    result = run_cli("serve", str(models["onnx"]), str(copy), "--port", "0", cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    assert "scorer" in result.stderr, result.stderr


@pytest.mark.parametrize("with_config", [False, True], ids=["no-arguments", "config-without-models"])
def test_nothing_to_serve_exits_non_zero(with_config: bool, tmp_path: Path) -> None:
    args = ["serve", "--port", "0"]
    if with_config:
        config_path = tmp_path / "empty.yaml"
        config_path.write_text("max_queue: 8\nmodels: []\n")
        args += ["--config", str(config_path)]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "serving on" not in result.stdout
    assert "model" in flat(result.stderr), result.stderr
