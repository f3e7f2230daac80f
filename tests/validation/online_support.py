"""Inference-log records as the gateway writes them, for the online-analysis tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
import xxhash

from modelyard.gateway.logs.record import InferenceLog, Role, encode_record


def oip_body(values: Sequence[float] | Sequence[Sequence[float]], version: str = "1") -> str:
    """An OIP answer with one FP32 output ``y`` (one row, or one row per inner list)."""
    rows = (
        [list(values)] if values and not isinstance(values[0], (list, tuple)) else [list(r) for r in values]
    )  # type: ignore[arg-type]
    flat = [x for row in rows for x in row]
    doc = {
        "model_name": "m",
        "model_version": version,  # differs between versions: only the outputs are compared
        "id": "r",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [len(rows), len(rows[0])], "data": flat}],
    }
    return orjson.dumps(doc).decode()


def record(
    request_id: str,
    version: str,
    role: Role = "primary",
    body: str | None = None,
    *,
    status: int = 200,
    latency_ms: float = 3.0,
    payload: str = "full",
    protocol: str = "v2",
    project: str = "p",
    model: str = "m",
    request: str | None = None,
) -> InferenceLog:
    """One logged answer; ``payload`` as the route's log_payload would make it. The request's body
    is ``request`` (by default one of its own per request id), hashed into ``request_hash``."""
    text = body or ""
    digest = request_hash = None
    if payload != "none":
        digest = xxhash.xxh3_128_hexdigest(text.encode())
        request_hash = xxhash.xxh3_128_hexdigest((request or f"request {request_id}").encode())
    return InferenceLog(
        time.time(), request_id, project, model, version, "http://127.0.0.1:1", role, protocol,
        status, latency_ms, 10, len(text), request_hash, digest, None,
        text if payload == "full" else None, None,
    )  # fmt: skip


def line(*args: object, **kwargs: object) -> bytes:
    return encode_record(record(*args, **kwargs))  # type: ignore[arg-type]


def mirrored_pairs(
    count: int, candidate: str = "v2", *, flip: bool = False, payload: str = "full", start: int = 0
) -> list[bytes]:
    """``count`` requests answered by v1 and mirrored to ``candidate`` (its values negated with ``flip``)."""
    lines = []
    for i in range(start, start + count):
        values = [0.5 + i % 7, -1.0, 2.0 * (i % 3)]
        mirrored = [-v for v in values] if flip else values
        lines.append(line(f"r{i}", "v1", "primary", oip_body(values, "1"), payload=payload))
        lines.append(line(f"r{i}", candidate, "mirror", oip_body(mirrored, "2"), payload=payload))
    return lines
