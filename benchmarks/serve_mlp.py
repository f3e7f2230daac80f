#!/usr/bin/env python3
"""Adaptive-batching benchmark: the standard MLP served by `modelyard serve`, driven over HTTP.

What it measures, all in one run and with the same thread settings (one onnxruntime intra-op
thread):
  1. the raw model: `session.run` at batch 64 in a Python loop -> items/s and ms per call;
  2. the server: `modelyard serve mlp.onnx --max-batch-size 64`, driven by wrk with 64 and 128
     connections, each request one item as an OIP JSON body (what peer servers' clients send).
It prints served items/s, p50/p99 latency, and the batching efficiency = served items/s divided by
raw items/s at batch 64; and p99 as a multiple of the raw batch-64 call time.

usage: benchmarks/serve_mlp.py [--duration 15] [--connections 64 128] [--max-latency-ms MS]
Needs wrk (Debian package `wrk`); see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAKE_MLP = ROOT.parent / "shared" / "bench" / "make_mlp.py"
OUT = ROOT / "benchmarks" / "out"
BATCH = 64


def build_model() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "mlp.onnx"
    if not path.exists():
        if not MAKE_MLP.exists():
            sys.exit(f"the standard model builder is missing: {MAKE_MLP}")
        subprocess.run([sys.executable, str(MAKE_MLP), str(path)], check=True)
    return path


def raw_items_per_s(model: Path, seconds: float = 5.0) -> tuple[float, float]:
    """Raw onnxruntime at batch 64, one intra-op thread: (items/s, ms per call)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((BATCH, 512)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"x": x})
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"x": x})
        calls += 1
    elapsed = time.perf_counter() - started
    return calls * BATCH / elapsed, elapsed / calls * 1000


def start_server(model: Path, max_latency_ms: float | None) -> tuple[subprocess.Popen[str], str]:
    command = [
        str(ROOT / ".venv" / "bin" / "modelyard"), "serve", str(model), "--name", "mlp", "--port", "0",
        "--max-batch-size", str(BATCH), "--intra-op-threads", "1", "--max-queue", "4096",
        "--log-level", "warning",
    ]  # fmt: skip
    if max_latency_ms is not None:  # otherwise the server's default, which is what users get
        command += ["--max-latency-ms", str(max_latency_ms)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("modelyard: serving on "):
            return proc, line.split()[-1]
    sys.exit(f"server exited with {proc.wait()} before it served")


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


def drive(url: str, connections: int, seconds: int) -> dict[str, float]:
    x = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 512], "datatype": "FP32", "data": x.tolist()}]})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA % body)
    target = f"{url}/v2/models/mlp/infer"
    wrk = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "--latency"]
    # A short warm-up lets the batcher settle before the timed run.
    subprocess.run([*wrk[:5], "-d", "2s", "-s", script.name, target], capture_output=True, check=True)
    out = subprocess.run([*wrk, "-s", script.name, target], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise ValueError(f"no {label} latency in wrk output:\n{out}")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "items_per_s": rps,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--max-latency-ms", type=float, default=None, help="default: the server's")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    model = build_model()
    raw, call_ms = raw_items_per_s(model)
    print(f"raw onnxruntime, batch {BATCH}, 1 thread: {raw:,.0f} items/s ({call_ms:.1f} ms per call)")
    proc, url = start_server(model, args.max_latency_ms)
    try:
        header = ("conns", "items/s", "p50 ms", "p99 ms", "efficiency", "p99/call", "errors")
        widths = (5, 9, 7, 7, 10, 8, 6)
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
        for connections in args.connections:
            r = drive(url, connections, args.duration)
            print(
                f"{connections:>5} {r['items_per_s']:>9,.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                f"{r['items_per_s'] / raw:>10.2f} {r['p99_ms'] / call_ms:>8.1f} {r['non_2xx']:>6.0f}"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
