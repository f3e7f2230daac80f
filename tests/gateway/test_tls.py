"""The gateway over TLS: ``--tls-cert``/``--tls-key``, both listeners, clients that verify.

The certificate is self-signed, made here with the ``openssl`` command line for 127.0.0.1, and the
clients trust exactly it (an ``ssl`` context with it as the only CA), so a name or chain mistake
fails the handshake as it would for a real client.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control import up
from modelyard.control.settings import ControlSettings
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.tls import server_context
from tests.gateway.support import GatewayWorld
from tests.support import AnnouncedProcess, make_certificate

PREDICT = "/projects/mail/models/spam:predict"
BODY = b'{"instances": [[1.0]]}'

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "gateway")


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> Iterator[httpx.Client]:
    """A client that trusts the test certificate and nothing else."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certificate[0])), timeout=10) as client:
        yield client


def test_both_listeners_serve_https_to_a_client_that_verifies_them(
    env: GatewayWorld, certificate: tuple[Path, Path], trusting: httpx.Client
) -> None:
    replica = env.replica("v1")
    env.store.set_weights("mail", "spam", {"v1": 1})
    env.store.set_replicas("mail", "spam", "v1", [replica.url])
    gateway = env.gateway(tls=server_context(*certificate))
    assert gateway.url.startswith("https://")
    answer = trusting.post(gateway.url + PREDICT, content=BODY, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["replica"]) == (200, "v1")
    assert answer.extensions["http_version"] == b"HTTP/1.1"
    assert trusting.get(gateway.admin_url + "/-/routing").json()["routes"][0]["model"] == "spam"
    with httpx.Client(timeout=10) as default_trust, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        default_trust.get(gateway.url + "/health/live")  # self-signed: not trusted by default


def test_plain_http_on_the_tls_port_gets_no_answer(env: GatewayWorld, certificate: tuple[Path, Path]) -> None:
    gateway = env.gateway(tls=server_context(*certificate))
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nhost: gateway\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.startswith(b"HTTP/"), received[:100]
    with httpx.Client(verify=ssl.create_default_context(cafile=str(certificate[0])), timeout=10) as client:
        assert client.get(gateway.url + "/health/live").json() == {"live": True}  # still serving


def test_the_cli_serves_https_on_both_listeners(
    tmp_path: Path, certificate: tuple[Path, Path], trusting: httpx.Client
) -> None:
    cert, key = certificate
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    environ.update(MODELYARD_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "modelyard", "gateway", "serve", "--port", "0", "--workers", "1",
            "--admin-port", "0", "--log-sink", "none",
            "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    gateway = AnnouncedProcess(
        argv, tmp_path / "stderr.txt", component="gateway-admin", env=environ, start_new_session=True
    )
    try:
        admin_url = gateway.wait_until_serving(60)
        gateway.component = "gateway"
        url = gateway.wait_until_serving(60)
        assert url.startswith("https://127.0.0.1:")
        assert admin_url.startswith("https://127.0.0.1:")
        assert trusting.get(url + "/health/live").json() == {"live": True}
        assert trusting.get(url + "/-/routing").status_code == 404
        assert trusting.get(admin_url + "/-/routing").json()["routes"] == []
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGTERM)
        # Drained promptly though `trusting` keeps its connections open and never answers the
        # TLS close (the default shutdown timeout held the drain for 30 s).
        assert gateway.proc.wait(timeout=10) == 0, gateway.stderr()


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Path:
    """A key that is not the certificate's."""
    return make_certificate(tmp_path_factory.mktemp("other"), "other")[1]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cert only", "--tls-cert and --tls-key go together"),
        ("key only", "--tls-cert and --tls-key go together"),
        ("no cert file", "--tls-cert: the certificate"),
        ("no key file", "--tls-key: the private key"),
        ("another key", "--tls-cert: cannot use the certificate"),
        ("key as cert", "--tls-cert: cannot use the certificate"),
    ],
)
def test_the_cli_refuses_an_unusable_certificate_before_serving(
    tmp_path: Path, certificate: tuple[Path, Path], mismatched: Path, case: str, message: str
) -> None:
    cert, key = certificate
    missing = tmp_path / "missing.pem"
    flags = {
        "cert only": ["--tls-cert", str(cert)],
        "key only": ["--tls-key", str(key)],
        "no cert file": ["--tls-cert", str(missing), "--tls-key", str(key)],
        "no key file": ["--tls-cert", str(cert), "--tls-key", str(missing)],
        "another key": ["--tls-cert", str(cert), "--tls-key", str(mismatched)],
        "key as cert": ["--tls-cert", str(key), "--tls-key", str(key)],
    }[case]
    env = {"MODELYARD_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(
        app, ["gateway", "serve", "--port", "0", "--log-sink", "none", *flags], env=env
    )
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_settings_take_a_certificate_only_with_its_key(certificate: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        GatewaySettings(tls_cert=certificate[0])
    assert GatewaySettings(tls_cert=certificate[0], tls_key=certificate[1]).scheme == "https"
    assert GatewaySettings().scheme == "http"


def test_up_passes_the_gateways_admin_and_tls_settings_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    started: list[list[str]] = []

    def spawn(argv: list[str], **options: object) -> tuple[None, str]:
        started.append(argv)
        return None, "https://127.0.0.1:1"

    monkeypatch.setattr(up, "spawn_announced", spawn)
    control = ControlSettings(home=tmp_path)
    cert, key = certificate
    up._start_gateway(GatewaySettings(admin_port=9100, tls_cert=cert, tls_key=key), control)
    up._start_gateway(GatewaySettings(), control)
    with_flags, plain = started
    assert with_flags[with_flags.index("--admin-port") + 1] == "9100"
    assert with_flags[with_flags.index("--admin-host") + 1] == "127.0.0.1"
    assert with_flags[with_flags.index("--tls-cert") + 1] == str(cert)
    assert with_flags[with_flags.index("--tls-key") + 1] == str(key)
    assert not {"--admin-port", "--tls-cert", "--tls-key"} & set(plain)
