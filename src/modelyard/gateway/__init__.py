"""The gateway: ``/projects/{p}/models/{m}[/versions/{v}]`` routing to model-server replicas.

Weighted versions (canary, A/B), round robin over replicas with retries and passive health,
request mirroring, one inference-log schema shipped to a sink, Prometheus metrics. The routing
table lives in the control-plane database (or a watched file: ``--routes``) and is reloaded live.
See docs/gateway.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.gateway.settings import GatewaySettings

__all__ = [
    "GatewaySettings",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "GatewaySettings": "settings",
    },
)
