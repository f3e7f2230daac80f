"""Transport adapters: Open Inference Protocol REST, TF-Serving REST, probes and metrics."""

from modelyard.protocols.oip_rest import oip_routes
from modelyard.protocols.probes import probe_routes
from modelyard.protocols.tfserving_rest import tfserving_routes

__all__ = ["oip_routes", "probe_routes", "tfserving_routes"]
