"""The gateway's TLS: one server context from a certificate and its key, made once per worker.

Both of a worker's listeners (the public one and the admin one) use it. HTTP/1.1 is the only
protocol offered in ALPN, so a client that prefers HTTP/2 falls back rather than failing.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from modelyard.errors import InvalidInput

__all__ = ["server_context"]


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``cert`` (PEM, the chain after the certificate) and ``key``.

    Raises :class:`InvalidInput` naming the file when one cannot be read or they do not match.
    """
    for path, what, field in ((cert, "certificate", "tls_cert"), (key, "private key", "tls_key")):
        if not path.is_file():
            raise InvalidInput(f"the {what} {path}: no such file", field=field)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        if isinstance(exc, ssl.SSLError):  # OpenSSL's reason (KEY_VALUES_MISMATCH) or, for a
            # file that is not PEM at all, only "[SSL] PEM lib": this says more
            reason = exc.reason or "not a PEM certificate (chain) and its private key"
        else:
            reason = exc.strerror or str(exc)
        raise InvalidInput(
            f"cannot use the certificate {cert} with the key {key}: {reason}", field="tls_cert"
        ) from None
    return context
