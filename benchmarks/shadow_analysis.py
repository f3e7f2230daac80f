#!/usr/bin/env python3
"""How fast the online analysis keeps up with the gateway's inference log, on one core.

Writes a JSON-lines log the way the gateway does (``InferenceLog`` records, payload mode "full"):
requests to the standard benchmark model (``x`` [1, 512] FP32 in, ``logits`` [1, 10] out), every
one mirrored to a candidate, so half the records are primaries and half mirrored copies and each
request is one pair to join, decode and compare — the analysis' worst case (with a smaller
``mirror_fraction`` fewer records need a comparison). ``--disagree`` makes that share of the
candidate's answers differ (a flipped sign), which feeds the worst-rows list too.

Then, in the same run, on the same file, it measures:

- the floor: reading the file with the analysis' own reader (``JsonLinesSource``) and decoding each
  record's JSON, nothing else;
- the analysis: the same reader feeding ``OnlineAnalysis`` (stats, join, body decoding, the
  comparison of ``modelyard validate``).

It prints records/s of each (the best of ``--rounds`` rounds, the two alternating) and their
ratio. The process is pinned to one CPU.

usage: benchmarks/shadow_analysis.py [--requests 20000] [--disagree 0.1] [--payload full|hash]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson
import xxhash

from modelyard.gateway.logs.record import InferenceLog, encode_lines
from modelyard.validation.logread import JsonLinesSource
from modelyard.validation.online import READ_BATCH, OnlineAnalysis


def _body(values: list[float], version: str) -> str:
    doc = {
        "model_name": "mlp", "model_version": version, "id": "x",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 10], "data": values}],
    }  # fmt: skip
    return orjson.dumps(doc).decode()


def write_log(path: Path, requests: int, disagree: float, payload: str) -> int:
    """The log: one primary and one mirrored record per request; returns the number of records."""
    rng = random.Random(0)
    request = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 512],
                     "data": [round(rng.uniform(-1, 1), 6) for _ in range(512)]}]}
    ).decode()  # fmt: skip
    request_hash = xxhash.xxh3_128_hexdigest(request.encode())
    with open(path, "wb") as out:
        for start in range(0, requests, 4096):
            records: list[InferenceLog] = []
            for i in range(start, min(start + 4096, requests)):
                logits = [round(rng.gauss(0, 3), 5) for _ in range(10)]
                mirrored = [-x for x in logits] if rng.random() < disagree else logits
                for version, role, values in (("v1", "primary", logits), ("v2", "mirror", mirrored)):
                    body = _body(values, "1")  # both report model_version 1: hashes can match
                    digest = xxhash.xxh3_128_hexdigest(body.encode())
                    full = payload == "full"
                    records.append(InferenceLog(
                        1.7e9 + i / 1000, f"req-{i:08d}", "bench", "mlp", version, "http://127.0.0.1:9000",
                        role, "v2", 200, 2.0 + rng.random(), len(request), len(body), request_hash, digest,  # type: ignore[arg-type]
                        request if full else None, body if full else None, None,
                    ))  # fmt: skip
            out.write(encode_lines(records))
    return requests * 2


async def read_only(path: Path, records: int) -> float:
    """Seconds to read and JSON-decode every record (the floor)."""
    source = JsonLinesSource(path, start="start")
    seen, started = 0, time.perf_counter()
    while seen < records:
        lines = await source.read(READ_BATCH, 0)
        for line in lines:
            orjson.loads(line)
        seen += len(lines)
    elapsed = time.perf_counter() - started
    await source.close()
    return elapsed


async def analyse(path: Path, records: int) -> tuple[float, OnlineAnalysis]:
    """Seconds for the analysis to take every record, and the analysis (for a sanity check)."""
    source = JsonLinesSource(path, start="start")
    analysis = OnlineAnalysis()
    seen, started = 0, time.perf_counter()
    while seen < records:
        lines = await source.read(READ_BATCH, 0)
        analysis.feed(lines)
        seen += len(lines)
    elapsed = time.perf_counter() - started
    await source.close()
    return elapsed, analysis


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests in the log (2 records each)")
    parser.add_argument("--disagree", type=float, default=0.1, help="share of candidate answers that differ")
    parser.add_argument("--payload", choices=("full", "hash"), default="full")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inference.jsonl"
        records = write_log(path, args.requests, args.disagree, args.payload)
        size_mb = path.stat().st_size / 1e6
        floors, runs = [], []
        for _ in range(args.rounds):  # interleaved: a change in the machine's load hits both
            gc.collect()
            floors.append(asyncio.run(read_only(path, records)))
            gc.collect()
            runs.append(asyncio.run(analyse(path, records)))
        floor = min(floors)
        seconds, analysis = min(runs, key=lambda run: run[0])
    stats = analysis.stats("bench", "mlp")["v2"]
    assert stats.compared == args.requests, (stats.compared, args.requests)
    print(f"log: {records:,} records ({args.requests:,} requests, all mirrored), {size_mb:.0f} MB, "
          f"payload {args.payload}, {args.disagree:.0%} of candidate answers differ")  # fmt: skip
    print(f"read + JSON decode : {records / floor:10,.0f} records/s")
    print(f"online analysis    : {records / seconds:10,.0f} records/s "
          f"(agreement {stats.agreement:.3f}, {seconds / records * 1e6:.1f} µs a record)")  # fmt: skip
    print(f"ratio analysis / read: {seconds / floor:.2f}x the time")
    sys.exit(0 if records / seconds >= 5000 else 1)


if __name__ == "__main__":
    main()
