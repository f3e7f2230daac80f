"""Inference logs: one record schema for every request, shipped to a sink through a bounded buffer.

``record`` holds the schema and its encoding, ``shipper`` the background task that moves records
off the request path, ``sinks`` the destinations. The names below are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.gateway.logs.record import ENCODE_SLICE, Count, InferenceLog, LogSink, Role
    from modelyard.gateway.logs.shipper import LogShipper
    from modelyard.gateway.logs.sinks import SINK_URL_FORMATS, open_sink
    from modelyard.gateway.logs.sinks.files import DiscardSink, JsonLinesSink

__all__ = [
    "ENCODE_SLICE",
    "SINK_URL_FORMATS",
    "Count",
    "DiscardSink",
    "InferenceLog",
    "JsonLinesSink",
    "LogShipper",
    "LogSink",
    "Role",
    "open_sink",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ENCODE_SLICE": "record",
        "Count": "record",
        "InferenceLog": "record",
        "LogSink": "record",
        "Role": "record",
        "LogShipper": "shipper",
        "SINK_URL_FORMATS": "sinks",
        "open_sink": "sinks",
        "DiscardSink": "sinks.files",
        "JsonLinesSink": "sinks.files",
    },
)
