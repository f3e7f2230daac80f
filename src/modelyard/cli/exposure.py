"""How a control plane the CLI starts (``up``, ``registry serve``) is exposed: the address it binds,
access control, the Host names it answers to, TLS. Declared once, used by both commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["AllowedHosts", "Auth", "Host", "TlsCert", "TlsKey", "exposure_overrides"]

Host = Annotated[
    str | None,
    typer.Option(help="address to bind (default 127.0.0.1); off loopback an admin token must exist"),
]
Auth = Annotated[
    str | None,
    typer.Option(
        help="access control: auto (on once a token exists, or off loopback) or on (default auto)",
        show_default=False,
    ),
]
AllowedHosts = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="a Host name clients use besides loopback and the bound address (repeat; '*' for any)",
        show_default=False,
    ),
]
TlsCert = Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")]
TlsKey = Annotated[Path | None, typer.Option(help="the certificate's private key (PEM)")]


def exposure_overrides(
    host: str | None,
    auth: str | None,
    allowed_hosts: list[str] | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> dict[str, Any]:
    """The ``ControlSettings`` overrides these options give (None: not given, keep the default)."""
    if auth is not None and auth not in ("auto", "on"):
        raise typer.BadParameter(f"{auth!r}: use auto or on", param_hint="--auth")
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither", param_hint="--tls-cert")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint="--tls-cert/--tls-key")
    return {
        "host": host,
        "auth": auth,
        "allowed_hosts": allowed_hosts or None,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }
