"""The inference client: ``modelyard.Client(url).predict("mail/spam", inputs)``.

It speaks the Open Inference Protocol (KServe V2) JSON body to the gateway
(``/projects/{p}/models/{m}[/versions/{v}]/infer``) or straight to a model server
(``/v2/models/{m}[/versions/{v}]/infer``), over one pooled ``httpx`` client, retrying transient
failures with jittered exponential back-off and raising typed errors (:mod:`modelyard.client.errors`).
See docs/client.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.client._clients import AsyncClient, Client
    from modelyard.client.errors import (
        AuthenticationError,
        BadGatewayError,
        ClientError,
        ConnectionFailed,
        InvalidArgument,
        InvalidRequest,
        ModelFailedError,
        NotFoundError,
        NotReadyError,
        OverloadedError,
        PayloadTooLargeError,
        PermissionDeniedError,
        RateLimitedError,
        ServerError,
        Timeout,
        Unavailable,
    )

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "BadGatewayError",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "InvalidArgument",
    "InvalidRequest",
    "ModelFailedError",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "Timeout",
    "Unavailable",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AsyncClient": "_clients",
        "AuthenticationError": "errors",
        "BadGatewayError": "errors",
        "Client": "_clients",
        "ClientError": "errors",
        "ConnectionFailed": "errors",
        "InvalidArgument": "errors",
        "InvalidRequest": "errors",
        "ModelFailedError": "errors",
        "NotFoundError": "errors",
        "NotReadyError": "errors",
        "OverloadedError": "errors",
        "PayloadTooLargeError": "errors",
        "PermissionDeniedError": "errors",
        "RateLimitedError": "errors",
        "ServerError": "errors",
        "Timeout": "errors",
        "Unavailable": "errors",
    },
)
