"""The control plane as `modelyard registry serve` and `modelyard up` start it: HTTPS with a
certificate, and no start at all on a non-loopback address before an admin token exists."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import AnnouncedProcess, make_certificate


def _env(tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **cli_env, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_registry_serve_speaks_https_with_a_certificate(tmp_path: Path, cli_env: dict[str, str]) -> None:
    cert, key = make_certificate(tmp_path, "control")
    argv = [sys.executable, "-m", "modelyard", "registry", "serve", "--port", "0",
            "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    server = AnnouncedProcess(
        argv, tmp_path / "stderr.txt", component="registry", env=_env(tmp_path, cli_env)
    )
    try:
        url = server.wait_until_serving(timeout=60)
        assert url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, timeout=10) as client:
            assert client.get(f"{url}/api/v1/health").json() == {"status": "ok"}
            assert client.get(f"{url}/api/v1/models").status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/api/v1/health", timeout=5)
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)


@pytest.mark.parametrize("command", [["up", "--gateway-port", "0"], ["registry", "serve"]])
def test_no_start_off_loopback_without_an_admin_token(
    tmp_path: Path, cli_env: dict[str, str], command: list[str]
) -> None:
    argv = [sys.executable, "-m", "modelyard", *command, "--host", "0.0.0.0", "--port", "0"]
    done = subprocess.run(argv, env=_env(tmp_path, cli_env), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0 without access control" in done.stderr
    assert "modelyard token create --name NAME --role admin" in done.stderr
    assert "serving on" not in done.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_up_serves_the_control_plane_and_the_gateway_over_https(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    cert, key = make_certificate(tmp_path, "platform")
    argv = [sys.executable, "-m", "modelyard", "up", "--port", "0", "--gateway-port", "0",
            "--gateway-workers", "1", "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    platform = AnnouncedProcess(
        argv, tmp_path / "stderr.txt", component="control", env=_env(tmp_path, cli_env)
    )
    try:
        control = platform.wait_until_serving(timeout=90)
        platform.component = "gateway"
        gateway = platform.wait_until_serving(timeout=90)
        assert control.startswith("https://")
        assert gateway.startswith("https://")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            assert client.get(f"{control}/api/v1/health").status_code == 200
            assert client.get(f"{gateway}/health/live").status_code == 200
    finally:
        platform.proc.terminate()
        platform.proc.wait(timeout=60)
