"""The gateway: ``/projects/{p}/models/{m}[/versions/{v}]`` routing to model-server replicas.

Weighted versions (canary, A/B), round robin over replicas with retries and passive health,
request mirroring, one inference-log schema shipped to a sink, Prometheus metrics. The routing
table lives in the control-plane database (or a watched file: ``--routes``) and is reloaded live.
See docs/gateway.md.
"""

from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.table import ModelRoute, RoutingTable, VersionRoute

__all__ = ["GatewaySettings", "ModelRoute", "RoutingTable", "VersionRoute"]
