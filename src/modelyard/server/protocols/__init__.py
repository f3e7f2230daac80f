"""Transport adapters: Open Inference Protocol REST, TF-Serving REST, probes and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.server.protocols.oip_rest import oip_routes
    from modelyard.server.protocols.probes import probe_routes
    from modelyard.server.protocols.tfserving_rest import tfserving_routes

__all__ = [
    "oip_routes",
    "probe_routes",
    "tfserving_routes",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "oip_routes": "oip_rest",
        "probe_routes": "probes",
        "tfserving_routes": "tfserving_rest",
    },
)
