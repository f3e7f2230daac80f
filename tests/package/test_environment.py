"""``--isolated``: one cached venv per requirement set, built atomically, shadowing the base versions.

The end-to-end test runs two packages pinned to different versions of ``six`` side by side, each
in its own environment (pip installs from the configured index), and asks each model which
``six`` it imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.errors import PackageInvalid
from modelyard.package import build_package
from modelyard.package.environment import (
    EnvironmentBuildError,
    ensure_environment,
    environment_key,
    environment_python,
    isolated_command,
    isolated_requirements,
)
from modelyard.server import ModelConfig, Settings
from tests.package.conftest import onnx_dir
from tests.support import AnnouncedProcess

SIX_MODEL = textwrap.dedent(
    """
    import importlib

    import numpy as np

    import modelyard
    from modelyard import TensorSpec


    @modelyard.model(inputs=[TensorSpec("x", "FP32", [-1])], outputs=[TensorSpec("six", "BYTES", [-1])])
    class Sixer:
        def load(self):
            self.six = importlib.import_module("six")  # a requirement: imported when served, not built

        def predict(self, inputs):
            return {"six": np.array([self.six.__version__.encode()] * len(inputs["x"]), dtype=object)}
    """
)


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One modelyard home per test session: each requirement set's venv is built once."""
    return tmp_path_factory.mktemp("isolated-home")


def six_package(folder: Path, version: str) -> Path:
    source = folder / f"six{version.replace('.', '')}"
    source.mkdir(parents=True)
    (source / "model.py").write_text(SIX_MODEL)
    (source / "requirements.txt").write_text(f"six=={version}\n")
    return build_package(source, folder, name=source.name)


def test_the_key_depends_on_the_requirements_only_as_a_set() -> None:
    assert environment_key(["a==1", "b==2"]) == environment_key(["b==2", "a==1"])
    assert environment_key(["a==1"]) != environment_key(["a==2"])


def test_an_environment_without_requirements_still_sees_modelyard(shared_home: Path) -> None:
    env = ensure_environment([], shared_home)
    assert ensure_environment([], shared_home) == env  # cached
    probe = "import modelyard, numpy, sys; print(sys.prefix)"
    result = subprocess.run(
        [str(environment_python(env)), "-c", probe], capture_output=True, text=True, check=True
    )
    assert Path(result.stdout.strip()).resolve() == env.resolve()


def test_a_failed_build_leaves_nothing_to_reuse(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError, match="no-such-package-modelyard-test"):
        ensure_environment(["no-such-package-modelyard-test==0.0.1"], tmp_path)
    assert list((tmp_path / "envs").iterdir()) == []


def test_conflicting_pins_across_packages_are_refused(tmp_path: Path) -> None:
    packages = []
    for pin in ("six==1.16.0", "six==1.17.0"):
        source = onnx_dir(tmp_path / pin.replace("=", "").replace(".", ""))
        packages.append(build_package(source, tmp_path, requirements=[pin]))
    same = isolated_requirements(Settings(models=[ModelConfig(path=str(packages[0]))] * 2))
    assert same == ["six==1.16.0"]
    with pytest.raises(PackageInvalid, match=r"six==1\.17\.0"):
        isolated_requirements(Settings(models=[ModelConfig(path=str(p)) for p in packages]))


def test_the_isolated_command_runs_the_venv_python_on_the_same_settings(
    tmp_path: Path, shared_home: Path
) -> None:
    package = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    settings = Settings(port=0, models=[ModelConfig(path=str(package), name="renamed")])
    command = isolated_command(settings, shared_home)
    assert command[0] == str(environment_python(ensure_environment([], shared_home)))
    assert command[-3:-1] == ["serve", "--config"]
    assert Settings.model_validate_json(Path(command[-1]).read_text()) == settings
    assert isolated_command(settings, shared_home) == command  # same settings, same file
    assert Path(command[-1]).stat().st_mode & 0o077 == 0  # owner-only: it may hold a token


def test_an_environment_that_cannot_be_built_is_one_line_and_exit_2(tmp_path: Path) -> None:
    package = build_package(
        onnx_dir(tmp_path / "m"), tmp_path, requirements=["no-such-package-modelyard-test==1"]
    )
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.package.environment", str(package), "--port", "0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("modelyard: pip could not install no-such-package-modelyard-test==1")
    assert "Traceback" not in result.stderr


class Isolated(AnnouncedProcess):
    """``modelyard serve --isolated PACKAGE --port 0``: the isolated server and its URL."""

    def __init__(self, package: Path, home: Path, cwd: Path) -> None:
        env = {**os.environ, "MODELYARD_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        cli = str(Path(sys.executable).with_name("modelyard"))
        command = [cli, "serve", "--isolated", str(package), "--port", "0", "--log-level", "warning"]
        super().__init__(command, cwd / f"isolated-stderr-{id(self)}.txt", cwd=cwd, env=env)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def isolated(package: Path, home: Path, cwd: Path) -> Iterator[Isolated]:
    server = Isolated(package, home, cwd)
    try:
        yield server
    finally:
        server.close()


def ask_six(url: str, model: str) -> str:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0.0]}]}
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    data: str = response.json()["outputs"][0]["data"][0]
    return data


@pytest.mark.slow
def test_two_packages_run_side_by_side_with_different_versions(tmp_path: Path, shared_home: Path) -> None:
    old, new = six_package(tmp_path, "1.16.0"), six_package(tmp_path, "1.17.0")
    with isolated(old, shared_home, tmp_path) as first, isolated(new, shared_home, tmp_path) as second:
        first_url, second_url = first.wait_until_serving(), second.wait_until_serving()
        assert ask_six(first_url, "six1160") == "1.16.0"
        assert ask_six(second_url, "six1170") == "1.17.0"
        # The launcher replaced itself with the venv's server: SIGTERM drains it and it exits 0.
        for server in (first, second):
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=30) == 0
    envs = sorted(p.name for p in (shared_home / "envs").iterdir() if "six" not in p.name)
    assert environment_key(["six==1.16.0"]) in envs
    assert environment_key(["six==1.17.0"]) in envs
    assert not [name for name in envs if "partial" in name]
