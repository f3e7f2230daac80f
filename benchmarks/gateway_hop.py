#!/usr/bin/env python3
"""Gateway-hop benchmark: what one hop through `modelyard gateway` costs, next to nginx's.

In one run, all on 127.0.0.1, with a trivial backend so that the hop is what is measured:
  - backend: nginx, one worker, answering every POST with a constant `{"predictions":[[0.5]]}`
    (a second server block on another port is the mirror target, same answer);
  - direct:  wrk -> backend                 (http://127.0.0.1:B/v1/models/const:predict)
  - nginx:   wrk -> nginx reverse proxy (--workers processes, keep-alive upstream) -> backend
  - gateway: wrk -> `modelyard gateway serve --workers N` -> backend
             (http://127.0.0.1:G/projects/bench/models/const:predict; inference log on, the default
             JSON-lines sink with payload hashes; metrics on; --mirror-fraction of requests copied
             to the mirror target).
Each request is a ~10 KB TF-Serving JSON POST. For each concurrency (default 1 and 64 connections)
it warms up and measures direct, nginx and gateway back to back, then prints req/s, p50/p99, the
p50/p99 each proxy adds to direct and its throughput as a ratio of direct, and checks the targets
(issue 4): gateway req/s at 64 connections >= 50% of nginx's; gateway added p50 <= 3x nginx's.

usage: benchmarks/gateway_hop.py [--duration 8] [--warmup 2] [--connections 1,64] [--workers 2]
                                 [--mirror-fraction 0.1] [--body-kb 10] [--json PATH]
Needs nginx and wrk (Debian packages `nginx`, `wrk`); see docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
MODELYARD = ROOT / ".venv" / "bin" / "modelyard"
ANSWER = '{"predictions":[[0.5]]}'
TARGETS = ("direct", "nginx", "gateway")
WRK_RESOLUTION_MS = 0.001  # wrk's latency histogram counts whole microseconds
GATEWAY_THROUGHPUT_TARGET = 0.5  # gateway req/s at 64 connections >= 0.5 x nginx's
GATEWAY_P50_TARGET = 3.0  # gateway added p50 <= 3 x nginx's added p50

BACKEND_CONF = """\
daemon off;
worker_processes 1;
{user}pid {tmp}/backend.pid;
error_log {tmp}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/backend-body;
    proxy_temp_path {tmp}/backend-proxy;
    fastcgi_temp_path {tmp}/backend-fastcgi;
    uwsgi_temp_path {tmp}/backend-uwsgi;
    scgi_temp_path {tmp}/backend-scgi;
    client_body_buffer_size {buffer}k;
    client_max_body_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 '{answer}'; }}
    }}
    server {{
        listen 127.0.0.1:{mirror_port};
        location / {{ return 200 '{answer}'; }}
    }}
}}
"""

PROXY_CONF = """\
daemon off;
worker_processes {workers};
{user}pid {tmp}/proxy.pid;
error_log {tmp}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/proxy-body;
    proxy_temp_path {tmp}/proxy-proxy;
    fastcgi_temp_path {tmp}/proxy-fastcgi;
    uwsgi_temp_path {tmp}/proxy-uwsgi;
    scgi_temp_path {tmp}/proxy-scgi;
    client_body_buffer_size {buffer}k;
    client_max_body_size 16m;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

# The body is read from a file: a TF-Serving body ends in "]]", which would close a Lua long string.
LUA = """\
local f = assert(io.open([==[{path}]==], "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = f:read("*a")
f:close()
"""


@dataclass
class Measure:
    target: str
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]


class Interrupted(Exception):
    """SIGTERM while running: unwinds like Ctrl-C so every child process is stopped."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (bound to port 0, then released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def make_body(kilobytes: float) -> bytes:
    """A TF-Serving JSON body of about ``kilobytes`` KB: rows of 16 floats."""
    rng = random.Random(0)
    rows: list[list[float]] = []
    size = len(b'{"instances": []}')
    while size < kilobytes * 1024:
        row = [round(rng.uniform(-1, 1), 6) for _ in range(16)]
        rows.append(row)
        size += len(json.dumps(row)) + 2
    return json.dumps({"instances": rows}).encode()


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, log: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode} before it listened:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    sys.exit(f"{name} did not listen on port {port} within {timeout_s:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"({path.name}: empty)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Processes:
    """The child processes of one run, each in its own session; stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, command: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            # Own session: a Ctrl-C on the terminal reaches only this script, which then stops them.
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group: its workers, nothing else
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc)


def start_nginx(procs: Processes, tmp: Path, name: str, conf: str, port: int) -> None:
    path = tmp / f"{name}.conf"
    path.write_text(conf)
    log = tmp / f"{name}.out"
    proc = procs.start(
        name, ["nginx", "-c", str(path), "-p", str(tmp), "-e", str(tmp / f"{name}-error.log")], log
    )
    wait_port(port, proc, name, tmp / f"{name}-error.log")


def gateway_env(home: Path) -> dict[str, str]:
    """This environment less any MODELYARD_* setting, with a fresh MODELYARD_HOME."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(home)
    return env


def configure_routes(env: dict[str, str], backend: str, mirror: str, fraction: float) -> None:
    commands = [
        ["set", "bench/const", "v1=100"],
        ["replicas", "bench/const", "v1", backend],
        ["replicas", "bench/const", "shadow", mirror],
        ["mirror", "bench/const", "shadow", "--fraction", str(fraction)],
    ]
    for command in commands:
        done = subprocess.run([str(MODELYARD), "route", *command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"modelyard route {' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")


def start_gateway(
    procs: Processes, tmp: Path, env: dict[str, str], workers: int
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The gateway's process, its URL and its admin listener's (where /metrics is)."""
    log = tmp / "gateway.out"
    command = [str(MODELYARD), "gateway", "serve", "--port", "0", "--workers", str(workers)]
    command += ["--admin-port", "0"]
    proc = procs.start("gateway", command, log, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"^modelyard gateway: serving on (http://\S+)$", text, re.M)
        admin = re.search(r"^modelyard gateway-admin: serving on (http://\S+)$", text, re.M)
        if found and admin:
            return proc, found.group(1), admin.group(1)
        if proc.poll() is not None:
            sys.exit(f"the gateway exited with {proc.returncode} before it served:\n{tail(log)}")
        time.sleep(0.05)
    sys.exit(f"the gateway did not announce itself within 120 s:\n{tail(log)}")


def check_answer(name: str, url: str, body: bytes) -> None:
    """One request by hand: a 200 with the backend's constant answer, or exit."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer = response.status, response.read().decode(errors="replace")
    except OSError as exc:
        sys.exit(f"{name}: POST {url} failed: {exc}")
    if status != 200 or json.loads(answer) != json.loads(ANSWER):
        sys.exit(f"{name}: POST {url} answered {status} {answer[:200]!r}, expected 200 {ANSWER}")


def run_wrk(script: Path, url: str, connections: int, seconds: float) -> str:
    command = [
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "10s", "--latency",
        "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        sys.exit(f"wrk failed ({done.returncode}) on {url}:\n{done.stderr}{done.stdout}")
    return done.stdout


def parse_wrk(out: str, target: str, connections: int) -> Measure:
    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            raise ValueError(f"no {label} latency in wrk output:\n{out}")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    if rps is None or total is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = {}
    if socket_errors:
        errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, socket_errors.groups()), strict=True)
        )
    return Measure(
        target, connections, int(total.group(1)), float(rps.group(1)), ms("50%"), ms("99%"),
        int(non_2xx.group(1)) if non_2xx else 0, errors,
    )  # fmt: skip


def read_metrics(url: str) -> dict[str, float]:
    """The gateway's counters of interest, summed over labels except the one that matters."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = {
        "modelyard_gateway_requests_total": "code",
        "modelyard_gateway_mirror_requests_total": "outcome",
        "modelyard_gateway_log_records_total": "outcome",
        "modelyard_gateway_replica_requests_total": "code",
        "modelyard_gateway_retries_total": "reason",
        "modelyard_gateway_ejections_total": None,
    }
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) not in wanted:
            continue
        name, labels, value = match.groups()
        key_label = wanted[name]
        found = re.search(rf'{key_label}="([^"]*)"', labels or "") if key_label else None
        key = f"{name.removeprefix('modelyard_gateway_')}" + (f"[{found.group(1)}]" if found else "")
        sums[key] = sums.get(key, 0.0) + float(value)
    return sums


def fmt_ms(value: float) -> str:
    return f"{value:.3f}"


def print_table(connections: int, rows: dict[str, Measure]) -> None:
    direct = rows["direct"]
    print(f"\n{connections} connection{'s' if connections > 1 else ''}:")
    header = ("target", "req/s", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "ratio", "non-2xx", "sock err")
    widths = (8, 9, 8, 8, 8, 8, 6, 7, 8)
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for target in TARGETS:
        r = rows[target]
        added = ("", "", "") if target == "direct" else (
            fmt_ms(r.p50_ms - direct.p50_ms), fmt_ms(r.p99_ms - direct.p99_ms), f"{r.rps / direct.rps:.2f}"
        )  # fmt: skip
        cells = (
            target, f"{r.rps:,.0f}", fmt_ms(r.p50_ms), fmt_ms(r.p99_ms), *added, str(r.non_2xx),
            str(sum(r.socket_errors.values())),
        )  # fmt: skip
        print("  " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))


def check_targets(results: dict[int, dict[str, Measure]]) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = []
    print("\ntargets (issue 4):")
    top = max(results)
    g, n = results[top]["gateway"].rps, results[top]["nginx"].rps
    ok = g >= GATEWAY_THROUGHPUT_TARGET * n
    print(
        f"  {'PASS' if ok else 'FAIL'}  throughput at {top} connections: gateway {g:,.0f} req/s = "
        f"{g / n:.0%} of nginx's {n:,.0f} (target >= {GATEWAY_THROUGHPUT_TARGET:.0%})"
    )
    checks.append({"check": "throughput", "connections": top, "gateway_rps": g, "nginx_rps": n,
                   "ratio": g / n, "passed": ok})  # fmt: skip
    for connections, rows in results.items():
        direct = rows["direct"].p50_ms
        gw_added, ng_added = rows["gateway"].p50_ms - direct, rows["nginx"].p50_ms - direct
        check: dict[str, object] = {"check": "added_p50", "connections": connections,
                                    "gateway_added_ms": gw_added, "nginx_added_ms": ng_added}  # fmt: skip
        if ng_added < WRK_RESOLUTION_MS:
            check["passed"] = None
            print(
                f"  n/a   added p50 at {connections} connections: nginx adds {ng_added:.3f} ms, below wrk's "
                f"{WRK_RESOLUTION_MS * 1000:.0f} us resolution; gateway adds {gw_added:.3f} ms"
            )
        else:
            ok = gw_added <= GATEWAY_P50_TARGET * ng_added
            check["passed"], check["ratio"] = ok, gw_added / ng_added
            print(
                f"  {'PASS' if ok else 'FAIL'}  added p50 at {connections} connections: gateway "
                f"{gw_added:.3f} ms = {gw_added / ng_added:.1f}x nginx's {ng_added:.3f} ms "
                f"(target <= {GATEWAY_P50_TARGET:g}x)"
            )
        checks.append(check)
    return checks


def measure_all(
    args: argparse.Namespace, script: Path, urls: dict[str, str]
) -> tuple[dict[int, dict[str, Measure]], int]:
    """Every measurement, and how many requests wrk saw answered by the gateway (warm-ups included)."""
    results: dict[int, dict[str, Measure]] = {}
    gateway_answered = 0
    for connections in args.connections:
        rows: dict[str, Measure] = {}
        for target in TARGETS:
            url = urls[target]
            if args.warmup > 0:
                warm = parse_wrk(run_wrk(script, url, connections, args.warmup), target, connections)
                if warm.non_2xx:
                    print(f"warning: {warm.non_2xx} non-2xx answers from {target} during the warm-up")
                gateway_answered += warm.requests if target == "gateway" else 0
            rows[target] = parse_wrk(run_wrk(script, url, connections, args.duration), target, connections)
            gateway_answered += rows[target].requests if target == "gateway" else 0
        results[connections] = rows
        print_table(connections, rows)
    return results, gateway_answered


def compiled() -> bool:
    """Whether the gateway's request path is compiled (scripts/compile) in the venv it runs from."""
    check = "import modelyard.gateway.http1 as m; print(m.__file__.endswith('.so'))"
    done = subprocess.run([str(MODELYARD.parent / "python"), "-c", check], capture_output=True, text=True)
    return done.stdout.strip() == "True"


def connections_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8, help="seconds per measurement (default 8)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each (default 2)")
    parser.add_argument("--connections", type=connections_list, default=[1, 64], help='default "1,64"')
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="gateway and nginx-proxy worker processes (default: one per core)")  # fmt: skip
    parser.add_argument("--mirror-fraction", type=float, default=0.1, help="share mirrored (default 0.1)")
    parser.add_argument("--body-kb", type=float, default=10, help="request body size in KB (default 10)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args()
    if args.duration <= 0 or args.warmup < 0 or args.workers < 1 or args.body_kb <= 0:
        parser.error("--duration and --body-kb must be > 0, --warmup >= 0, --workers >= 1")
    if not 0 < args.mirror_fraction <= 1:
        parser.error("--mirror-fraction must be in (0, 1]")
    return args


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    args = parse_args()
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(f"{' and '.join(missing)} not installed: apt-get install nginx wrk", file=sys.stderr)
        return 2

    body = make_body(args.body_kb)
    print(
        f"cores: {os.cpu_count()}; workers (gateway and nginx proxy): {args.workers}; connections: "
        f"{','.join(map(str, args.connections))}; {args.warmup:g} s warm-up + {args.duration:g} s per "
        f"measurement; body {len(body):,} bytes; mirror fraction {args.mirror_fraction:g}; gateway "
        f"request path {'compiled (mypyc, scripts/compile)' if compiled() else 'interpreted'}"
    )
    procs = Processes()
    with cleanup_on_signals(), tempfile.TemporaryDirectory(prefix="modelyard-gateway-hop-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            return run(args, tmp, body, procs)
        except (KeyboardInterrupt, Interrupted):
            print("\ninterrupted: stopping the servers", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()


def run(args: argparse.Namespace, tmp: Path, body: bytes, procs: Processes) -> int:
    (tmp / "body.json").write_bytes(body)
    script = tmp / "post.lua"
    script.write_text(LUA.format(path=tmp / "body.json"))
    backend_port, mirror_port, proxy_port = free_ports(3)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers otherwise drop to "nobody"
    buffer = int(len(body) / 1024) + 16
    settings = {"tmp": tmp, "user": user, "buffer": buffer, "answer": ANSWER}
    start_nginx(
        procs,
        tmp,
        "backend",
        BACKEND_CONF.format(port=backend_port, mirror_port=mirror_port, **settings),
        backend_port,
    )
    start_nginx(
        procs,
        tmp,
        "proxy",
        PROXY_CONF.format(port=proxy_port, backend_port=backend_port, workers=args.workers, **settings),
        proxy_port,
    )

    home = tmp / "home"
    env = gateway_env(home)
    backend, mirror = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{mirror_port}"
    configure_routes(env, backend, mirror, args.mirror_fraction)
    gateway, gateway_url, admin_url = start_gateway(procs, tmp, env, args.workers)
    urls = {
        "direct": f"{backend}/v1/models/const:predict",
        "nginx": f"http://127.0.0.1:{proxy_port}/v1/models/const:predict",
        "gateway": f"{gateway_url}/projects/bench/models/const:predict",
    }
    for target in TARGETS:
        check_answer(target, urls[target], body)

    results, answered = measure_all(args, script, urls)
    answered += 1  # check_answer's request
    checks = check_targets(results)

    metrics = read_metrics(admin_url)
    code = procs.stop(gateway, timeout_s=60)  # drains: the log shipper flushes its buffer
    log_file = home / "logs" / "inference.jsonl"
    logged = sum(1 for _ in log_file.open("rb")) if log_file.exists() else 0
    print(
        f"\ngateway sanity check (exit code {code} after SIGTERM): wrk counted {answered:,} answers "
        f"through the gateway (plus those in flight when each wrk run stopped); expected mirror copies "
        f"~{answered * args.mirror_fraction:,.0f}; log lines ~ answers + mirror copies"
    )
    for key in sorted(metrics):
        print(f"  {key}: {metrics[key]:,.0f}")
    print(f"  lines in {log_file.relative_to(tmp)}: {logged:,}")
    gateway_output = [line for line in tail(tmp / "gateway.out", 50).splitlines() if "serving on" not in line]
    if gateway_output:
        print("gateway output (last lines):\n  " + "\n  ".join(gateway_output))
    for name in ("backend", "proxy"):
        errors = (tmp / f"{name}-error.log").read_text(errors="replace").strip()
        if errors:
            print(f"nginx {name} error log (last lines):\n  " + "\n  ".join(errors.splitlines()[-10:]))

    if args.json is not None:
        data = {
            "cores": os.cpu_count(), "workers": args.workers, "duration_s": args.duration,
            "warmup_s": args.warmup, "body_bytes": len(body), "mirror_fraction": args.mirror_fraction,
            "results": [asdict(m) for rows in results.values() for m in rows.values()],
            "checks": checks, "gateway_metrics": metrics, "gateway_log_lines": logged,
            "gateway_exit_code": code, "gateway_answers_counted_by_wrk": answered,
        }  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"figures written to {args.json}")

    bad = [m for rows in results.values() for m in rows.values() if m.non_2xx]
    if bad:
        for m in bad:
            print(f"ERROR: {m.non_2xx} non-2xx answers from {m.target} at {m.connections} connections",
                  file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
