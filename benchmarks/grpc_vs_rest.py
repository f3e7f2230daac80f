#!/usr/bin/env python3
"""REST JSON against gRPC raw tensors: the standard MLP served once, driven both ways in one run.

One `modelyard serve mlp.onnx --grpc-port 0` (batch 64, one intra-op thread) answers both
protocols from the same data plane and batcher. For each concurrency N, a load generator written
in C drives each protocol in turn (rounds alternate), one item ([1, 512] FP32) per request:
  - REST: wrk, N keep-alive HTTP/1.1 connections, an OIP JSON body (`"data": [...]`), as
    benchmarks/serve_mlp.py and the peer harness send it;
  - gRPC: h2load, one HTTP/2 connection with N streams in flight (what a gRPC channel is, and what
    tritonclient.grpc opens), `ModelInfer` with `raw_input_contents`.
It prints items/s, p50 and p99 per protocol and N (the best round by items/s), the gRPC/REST
throughput ratio, the server's CPU cores while loaded and its CPU milliseconds per item, the raw
`session.run` batch-64 figure for scale, and the host. gRPC answers are counted from the server's
own metrics (h2load sees HTTP 200 even when the gRPC status says otherwise).

usage: benchmarks/grpc_vs_rest.py [--duration 10] [--concurrency 1 64] [--rounds 2]
Needs the grpc extra (grpcio), wrk and h2load (Debian: apt-get install wrk nghttp2-client).
See docs/performance.md, "gRPC beside REST".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_mlp import BATCH, ROOT, build_model, parse_wrk, raw_items_per_s

METHOD = "/inference.GRPCInferenceService/ModelInfer"
X = np.random.default_rng(1).standard_normal(512).astype(np.float32)


@dataclass
class Run:
    protocol: str
    concurrency: int
    items_per_s: float
    p50_ms: float
    p99_ms: float
    server_cores: float
    errors: int

    @property
    def cpu_ms_per_item(self) -> float:
        return self.server_cores / self.items_per_s * 1000


def start_server(model: Path) -> tuple[subprocess.Popen[str], str, str]:
    command = [
        str(ROOT / ".venv" / "bin" / "modelyard"), "serve", str(model), "--name", "mlp", "--port", "0",
        "--grpc-port", "0", "--max-batch-size", str(BATCH), "--intra-op-threads", "1",
        "--max-queue", "4096", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    rest = ""
    for line in proc.stdout:
        if line.startswith("modelyard: serving on "):
            rest = line.split()[-1]
        elif line.startswith("modelyard grpc: serving on "):
            return proc, rest, line.split()[-1]
    sys.exit(f"server exited with {proc.wait()} before it served")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def json_body() -> bytes:
    doc = {"inputs": [{"name": "x", "shape": [1, 512], "datatype": "FP32", "data": X.tolist()}]}
    return json.dumps(doc).encode()


def grpc_message() -> bytes:
    from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb

    message = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[X.astype("<f4").tobytes()])
    message.inputs.add(name="x", datatype="FP32", shape=[1, 512])
    return message.SerializeToString()


def grpc_failures(rest: str) -> int:
    """gRPC answers other than OK so far, from the server's own request counter."""
    with urllib.request.urlopen(f"{rest}/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return int(
        sum(
            float(line.split()[-1])
            for line in lines
            if line.startswith("modelyard_requests_total{")
            and 'protocol="grpc"' in line
            and 'code="200"' not in line
        )
    )


def wrk_rest(rest: str, concurrency: int, seconds: float, folder: Path) -> dict[str, float]:
    script = folder / "rest.lua"
    body = json_body().decode()
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body}]]\n'
    )
    target = f"{rest}/v2/models/mlp/infer"
    wrk = ["wrk", "-t", "1", "-c", str(concurrency), "-s", str(script), "--timeout", "10s", "--latency"]
    subprocess.run([*wrk, "-d", "2s", target], capture_output=True, check=True)  # warm-up
    out = subprocess.run([*wrk, "-d", f"{seconds:g}s", target], capture_output=True, text=True, check=True)
    result = parse_wrk(out.stdout)
    result["errors"] = result["non_2xx"] + result["socket_errors"]
    return result


def h2load_grpc(grpc: str, concurrency: int, seconds: float, folder: Path) -> dict[str, float]:
    message = grpc_message()
    body = folder / "grpc.bin"
    body.write_bytes(b"\0" + struct.pack(">I", len(message)) + message)  # gRPC's length-prefixed frame
    log = folder / "h2load.log"
    h2load = [
        "h2load", "-t", "1", "-c", "1", "-m", str(concurrency), "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
    ]  # fmt: skip
    target = f"{grpc}{METHOD}"
    subprocess.run([*h2load, "-D", "2", target], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [*h2load, "-D", f"{seconds:g}", "--log-file", str(log), target],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    durations = np.array([int(line.split("\t")[2]) for line in log.read_text().splitlines() if line]) / 1000
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|errored|timeout)", out))
    return {
        "items_per_s": len(durations) / seconds,
        "p50_ms": float(np.percentile(durations, 50)),
        "p99_ms": float(np.percentile(durations, 99)),
        "errors": float(failed),
    }


def measure(protocol: str, urls: tuple[str, str], concurrency: int, seconds: float, pid: int) -> Run:
    rest, grpc = urls
    with tempfile.TemporaryDirectory() as folder:
        failures = grpc_failures(rest)
        cpu, started = cpu_seconds(pid), time.perf_counter()
        if protocol == "rest":
            r = wrk_rest(rest, concurrency, seconds, Path(folder))
        else:
            r = h2load_grpc(grpc, concurrency, seconds, Path(folder))
            r["errors"] += grpc_failures(rest) - failures
        # The warm-up is inside the window: CPU per wall second is what counts, not its total.
        cores = (cpu_seconds(pid) - cpu) / (time.perf_counter() - started)
    return Run(protocol, concurrency, r["items_per_s"], r["p50_ms"], r["p99_ms"], cores, int(r["errors"]))


def check_answers(rest: str, grpc_url: str) -> None:
    """Both protocols give the same logits for the same item before anything is timed."""
    import grpc

    from modelyard.server.protocols.grpc_v2 import grpc_predict_v2_pb2 as pb

    with urllib.request.urlopen(f"{rest}/v2/models/mlp/infer", json_body(), timeout=30) as answer:
        via_rest = np.array(json.loads(answer.read())["outputs"][0]["data"], np.float32)
    with grpc.insecure_channel(grpc_url.removeprefix("http://")) as channel:
        reply = channel.unary_unary(METHOD)(grpc_message(), timeout=30)
    via_grpc = np.frombuffer(pb.ModelInferResponse.FromString(reply).raw_output_contents[0], "<f4")
    np.testing.assert_allclose(via_grpc, via_rest, rtol=1e-5, atol=1e-6)


def host_line() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    model = fields.get("Model name", platform.processor()).strip()
    return f"{model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=2, help="REST and gRPC alternate this many times")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install wrk nghttp2-client")

    print(f"host: {host_line()}")
    model = build_model()
    raw, call_ms = raw_items_per_s(model)
    print(f"raw onnxruntime, batch {BATCH}, 1 thread: {raw:,.0f} items/s ({call_ms:.1f} ms per call)")
    proc, rest, grpc = start_server(model)
    try:
        check_answers(rest, grpc)
        columns = ("conns", "protocol", "items/s", "p50 ms", "p99 ms", "cores", "cpu ms/item", "errors")
        widths = (5, 9, 9, 7, 7, 6, 11, 6)
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
        for concurrency in args.concurrency:
            best: dict[str, Run] = {}
            for _ in range(args.rounds):
                for protocol in ("rest", "grpc"):
                    run = measure(protocol, (rest, grpc), concurrency, args.duration, proc.pid)
                    if protocol not in best or run.items_per_s > best[protocol].items_per_s:
                        best[protocol] = run
            for r in best.values():
                print(
                    f"{r.concurrency:>5} {r.protocol:>9} {r.items_per_s:>9,.0f} {r.p50_ms:>7.2f} "
                    f"{r.p99_ms:>7.2f} {r.server_cores:>6.2f} {r.cpu_ms_per_item:>11.3f} {r.errors:>6}"
                )
            ratio = best["grpc"].items_per_s / best["rest"].items_per_s
            print(f"{concurrency:>5} gRPC raw / REST JSON items/s: {ratio:.2f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
