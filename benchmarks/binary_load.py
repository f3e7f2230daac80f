"""modelyard under load with the V2 binary tensor extension, measured as the peer harness measures.

``benchmarks/side_by_side.py`` calls :func:`measure`: the harness (``run_bench.py``) only posts JSON
bodies, and the speed goals ask for the binary case too (input and output tensors as raw bytes
after a JSON header, ``Inference-Header-Content-Length``: no JSON decode of 512 floats). Same model,
same server command line, same wrk closed loop and warm-up, the same figures per run (items/s,
p50, p99, server cores, the machine's busy share), as system ``modelyard-binary``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
LUA = HERE / "post_binary.lua"
PORT = 8119
URL = f"http://127.0.0.1:{PORT}/v2/models/mlp/infer"
TICK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 3.0
SYSTEM = "modelyard-binary"


def body(x: np.ndarray) -> tuple[bytes, int]:
    """The request: a JSON header naming the input's bytes and asking for binary output, then them."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    return header + x.astype("<f4").tobytes(), len(header)


def answer(payload: bytes, header_length: int) -> np.ndarray:
    """The logits of a binary answer (JSON header of ``header_length`` bytes, then the tensor)."""
    header = json.loads(payload[:header_length])
    output = header["outputs"][0]
    return np.frombuffer(payload[header_length:], dtype="<f4").reshape(output["shape"])


def _post(data: bytes, header_length: int) -> np.ndarray:
    request = urllib.request.Request(
        URL,
        data=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        length = int(response.headers["Inference-Header-Content-Length"])
        return answer(response.read(), length)


def _wait_ready(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"modelyard serve exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"modelyard serve was not ready within {timeout_s:g} s")


def _cpu_ticks(pid: int) -> int:
    """User + system ticks of the process (the server is one process; its threads are counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _machine() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def _wrk(conns: int, duration: float, body_file: Path, header_length: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{round(duration)}s", "--timeout", "10s", "-s", str(LUA), URL]
    env = dict(os.environ, BODY=str(body_file), HEADER_LENGTH=str(header_length))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    raise RuntimeError(f"wrk gave no RESULT: {done.stdout[-300:]} {done.stderr[-300:]}")


def _measured(pid: int, conns: int, duration: float, body_file: Path, header_length: int) -> dict[str, Any]:
    _wrk(conns, WARMUP_S, body_file, header_length)
    usage0, cpu0, (busy0, total0) = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_ticks(pid), _machine()
    d = _wrk(conns, duration, body_file, header_length)
    usage1, cpu1, (busy1, total1) = resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_ticks(pid), _machine()
    wrk_s = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
    errors = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
    return d | {
        "system": SYSTEM,
        "tag": "main",
        "conns": conns,
        "errors": errors,
        "ok_rps": round((d["requests"] - d["non2xx"]) / d["duration_s"], 1),
        "server_cores": round((cpu1 - cpu0) / TICK / d["duration_s"], 2),
        "wrk_cores": round(wrk_s / d["duration_s"], 2),
        "machine_busy_frac": round((busy1 - busy0) / max(1, total1 - total0), 3),
        "ncpu": os.cpu_count(),
    }


def measure(
    modelyard: Path,
    model: Path,
    x: np.ndarray,
    expected: np.ndarray,
    conns: tuple[int, ...],
    duration: float,
    out: Path,
) -> list[dict[str, Any]]:
    """Serve ``model`` as the harness does and load it with binary bodies at each of ``conns``;
    each run carries ``check``: whether the served logits match ``expected`` (1e-4)."""
    data, header_length = body(x)
    body_file = out / "body_binary.bin"
    body_file.write_bytes(data)
    cmd = [str(modelyard), "serve", str(model), "--name", "mlp", "--host", "127.0.0.1", "--port", str(PORT)]
    cmd += ["--max-batch-size", "64", "--intra-op-threads", "1"]
    with open(out / "modelyard-binary.log", "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process)
        diff = float(np.max(np.abs(_post(data, header_length) - expected)))
        check = {"ok": diff <= 1e-4, "max_abs_diff": diff}
        runs = []
        for c in conns:
            run = _measured(process.pid, c, duration, body_file, header_length) | {"check": check}
            print(
                f"[{SYSTEM}] c={c} ok_rps={run['ok_rps']} p50={run['p50_ms']} p99={run['p99_ms']}", flush=True
            )
            runs.append(run)
        return runs
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
