#!/usr/bin/env python3
"""modelyard side by side with the raw model, a 50-line FastAPI batcher and MLServer, in one run.

It drives the shared peer harness (`../shared/bench/peers`, or `--harness PATH`) the way its
README describes, on whatever host it runs:
  1. the standard model and request bodies in /tmp/peerbench (`make_model.py`, only when missing
     or not the standard bytes);
  2. the raw limit: `session.run` in a Python loop, one intra-op thread (`raw_limit.py`);
  3. modelyard (`.venv/bin/modelyard`), `fastapi-batch` and `mlserver`, each started alone, checked
     against the raw session and loaded by wrk at 1, 64 and 128 connections (`run_bench.py`).
Then it prints one table (items/s, p50, p99 and server cores per system and connections), the
speed goals with measured value, target and PASS/MISS, the host, and a warning when other work
used the machine during the measurements. Files: benchmarks/out/side-by-side-<UTC time>/
(raw.json and raw-after.json, runs.json, summary.json, report.txt). The raw limit is measured
before and after the servers, and ratios use the mean: some hosts change speed within minutes.

usage: benchmarks/side_by_side.py [--duration 15 | --quick] [--harness PATH] [--out DIR] [--setup]
Exit status: 0 when it ran (missed goals are reported, not failed), 1 when a system could not be
measured, 2 when something it needs is missing (it says what to run). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import binary_load

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT.parent / "shared" / "bench" / "peers"
MODELYARD = ROOT / ".venv" / "bin" / "modelyard"
OUT = ROOT / "benchmarks" / "out"
PEERBENCH = Path("/tmp/peerbench")  # run_bench.py hard-codes this folder for model, bodies, venvs
VENVS = PEERBENCH / "venvs"
SYSTEMS = ("modelyard", "fastapi-batch", "mlserver")
BINARY = binary_load.SYSTEM  # modelyard again, posting V2 binary tensors (binary_load.py)
CONNS = (1, 64, 128)
HARNESS_DURATION_S = 15.0  # run_bench.py's default
QUICK_DURATION_S = 5.0
BUSY_CORES = 0.2  # CPU used by others during a measurement beyond which the figures are suspect
DRIFT = 0.1  # the raw limit changing by more than this between the start and the end: ratios suspect

# The three venvs this benchmark needs, made as setup_venvs.sh makes them: (import check, packages).
PINS = ("onnxruntime==1.32.0", "numpy==2.4.6")
VENV_SPECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "base": ("import onnx, onnxruntime", ("onnx",)),
    "fastapi": (
        "import fastapi, uvicorn, uvloop, httptools, orjson, onnxruntime",
        ("fastapi", "uvicorn[standard]", "orjson"),
    ),
    # MLServer 1.7.1's inference worker dies at start-up with uvloop >= 0.22 (the harness README).
    "mlserver": (
        "import mlserver, onnxruntime, uvloop; assert uvloop.__version__ == '0.21.0'",
        ("mlserver", "uvloop==0.21.0"),
    ),
}

# Goals: modelyard against its peers and the raw model at 64 and 128 connections, and at one.
THROUGHPUT_VS_BATCHER = 1.2
THROUGHPUT_VS_MLSERVER = 3.0
EFFICIENCY_VS_RAW = 0.85
BINARY_EFFICIENCY_VS_RAW = 0.9
P99_VS_RAW_CALL = 3.0
P50_ONE_CONN_FACTOR, P50_ONE_CONN_SLACK_MS = 1.5, 0.5


class CannotRun(Exception):
    """Something the benchmark needs is missing; the message says what to run."""


@dataclass
class Goal:
    """One goal: the measured value against its target (`None` when it could not be measured)."""

    what: str
    measured: float | None
    target: float
    unit: str  # "x" (a ratio, higher is better) or "ms" (a latency, lower is better)

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        if self.unit == "ms":
            return self.measured <= self.target
        return self.measured >= self.target

    def row(self) -> tuple[str, str, str, str]:
        suffix, sign = (" ms", "<=") if self.unit == "ms" else ("x", ">=")
        value = "n/a" if self.measured is None else f"{self.measured:.2f}{suffix}"
        target = f"{sign} {self.target:.2f}{suffix}"
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[self.passed]
        return self.what, value, target, verdict


# ---------------------------------------------------------------- what it needs


def harness_dir(given: str | None) -> Path:
    harness = Path(given).resolve() if given else HARNESS
    missing = [n for n in ("run_bench.py", "raw_limit.py", "make_model.py") if not (harness / n).is_file()]
    if missing:
        raise CannotRun(
            f"the peer harness is not at {harness} (missing {', '.join(missing)}).\n"
            f"It lives in the project's shared folder, ../shared/bench/peers beside this checkout;\n"
            f"point to another copy with --harness PATH."
        )
    return harness


def venv_ok(name: str) -> bool:
    python = VENVS / name / "bin" / "python"
    if not python.is_file():
        return False
    check = VENV_SPECS[name][0]
    return subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


def check_prerequisites(harness: Path) -> None:
    """Raises CannotRun with the commands to run when a venv, wrk or modelyard is missing."""
    problems: list[str] = []
    missing = [name for name in VENV_SPECS if not venv_ok(name)]
    if missing:
        problems.append(
            f"the harness's venvs {', '.join(missing)} are missing or broken under {VENVS}. Make them with\n"
            f"    {harness}/setup_venvs.sh      (every peer's venv, wrk and nginx; ~10 min)\n"
            f"or only the three this benchmark needs (base, fastapi, mlserver):\n"
            f"    {sys.executable} {Path(__file__).resolve()} --setup"
        )
    if shutil.which("wrk") is None:
        problems.append("wrk is not installed: apt-get install wrk")
    if not os.access(MODELYARD, os.X_OK):
        problems.append(f"{MODELYARD} is missing: run scripts/bootstrap (make bench does)")
    if problems:
        raise CannotRun("\n".join(problems))


def setup_venvs() -> None:
    """Makes the base, fastapi and mlserver venvs as setup_venvs.sh does (skips working ones)."""
    logs = PEERBENCH / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, (_, packages) in VENV_SPECS.items():
        if venv_ok(name):
            print(f"venv {name}: ok")
            continue
        print(
            f"venv {name}: installing {' '.join(packages)} with {' '.join(PINS)} (log: {logs}/pip_{name}.log)"
        )
        shutil.rmtree(VENVS / name, ignore_errors=True)
        subprocess.run(["python3", "-m", "venv", str(VENVS / name)], check=True)
        pip = [str(VENVS / name / "bin" / "pip"), "install", "-q"]
        with open(logs / f"pip_{name}.log", "w") as log:
            done = subprocess.run([*pip, *packages, *PINS], stdout=log, stderr=subprocess.STDOUT)
            if done.returncode != 0:  # as setup_venvs.sh: numpy's pin may not fit; keep onnxruntime's
                subprocess.run([*pip, *packages, PINS[0]], stdout=log, stderr=subprocess.STDOUT)
        print(f"venv {name}: {'ok' if venv_ok(name) else 'FAILED'}")
    if shutil.which("wrk") is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One run at a time on this machine: the harness uses fixed ports and folders."""
    PEERBENCH.mkdir(parents=True, exist_ok=True)
    with open(PEERBENCH / "side-by-side.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another side-by-side run holds /tmp/peerbench; waiting for it to finish", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- running the harness


def standard_model(harness: Path) -> None:
    """The standard model and bodies, made again only when missing or not the standard bytes."""
    recorded = harness / "results" / "model.json"  # the harness's record of the standard bytes
    expected = json.loads(recorded.read_text()).get("sha256", "") if recorded.is_file() else ""
    model = PEERBENCH / "mlp.onnx"
    bodies = ("body.json", "body_v2.json", "x.npy")
    ready = model.exists() and all((PEERBENCH / b).exists() for b in bodies)
    if ready and hashlib.sha256(model.read_bytes()).hexdigest() == expected:
        return
    print("making the standard model and request bodies (make_model.py)", flush=True)
    subprocess.run(
        [str(VENVS / "base" / "bin" / "python"), str(harness / "make_model.py"), str(PEERBENCH)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, as the harness's machine_busy() counts them."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def raw_limit(harness: Path, out: Path, quick: bool, name: str = "raw") -> tuple[dict[int, Any], float]:
    """Runs raw_limit.py with one thread (``name``.json, .log); returns its rows by batch and the
    cores others used."""
    rounds = ["--repeats", "3", "--window", "0.5"] if quick else []
    print("raw limit: session.run in a loop, one intra-op thread (raw_limit.py)", flush=True)
    cmd = [
        str(VENVS / "base" / "bin" / "python"),
        str(harness / "raw_limit.py"),
        str(PEERBENCH / "mlp.onnx"),
        str(out / f"{name}.json"),
        "--threads",
        "1",
        *rounds,
    ]
    (b0, t0), started = busy_ticks(), time.monotonic()
    with open(out / f"{name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    (b1, t1), wall = busy_ticks(), time.monotonic() - started
    # The loop keeps one core busy; anything beyond that was someone else.
    others = (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1) - 1.0
    rows = json.loads((out / f"{name}.json").read_text())["rows"]
    by_batch = {row["batch"]: row for row in rows if row["threads"] == 1}
    print(f"raw limit: done in {wall:.0f} s", flush=True)
    return by_batch, max(0.0, others)


def run_peers(harness: Path, out: Path, duration: float) -> dict[str, Any]:
    """run_bench.py over the three systems; its progress lines go straight to the terminal."""
    cmd = [
        str(VENVS / "base" / "bin" / "python"),
        str(harness / "run_bench.py"),
        str(out / "runs.json"),
        "--only",
        ",".join(SYSTEMS),
        "--conns",
        ",".join(map(str, CONNS)),
        "--repeats",
        "1",
        "--skip-probe",
        "--skip-nginx",
        "--duration",
        f"{duration:g}",
    ]
    env = dict(os.environ, MODELYARD_BIN=str(MODELYARD), PYTHONHASHSEED="0")
    subprocess.run(cmd, check=True, env=env)
    result: dict[str, Any] = json.loads((out / "runs.json").read_text())
    return result


def binary_runs(out: Path, duration: float) -> list[dict[str, Any]]:
    """modelyard again at 64 and 128 connections, posting V2 binary tensors (binary_load.py),
    checked against the raw session's logits for the same input."""
    import numpy as np
    import onnxruntime as ort

    x = np.load(PEERBENCH / "x.npy")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(PEERBENCH / "mlp.onnx"), options, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    del session
    print(f"{BINARY}: modelyard with V2 binary tensors (binary_load.py)", flush=True)
    return binary_load.measure(MODELYARD, PEERBENCH / "mlp.onnx", x, expected, CONNS[1:], duration, out)


def host() -> dict[str, Any]:
    """lscpu's model name and CPU layout, and the memory: what to record next to the figures."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
    with open("/proc/meminfo") as f:
        mem_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
    return {
        "model_name": fields.get("Model name", "?"),
        "cpus": os.cpu_count(),
        "cores_per_socket": fields.get("Core(s) per socket", "?"),
        "threads_per_core": fields.get("Thread(s) per core", "?"),
        "sockets": fields.get("Socket(s)", "?"),
        "hypervisor": fields.get("Hypervisor vendor", ""),
        "mem_gb": round(mem_kb / 2**20, 1),
    }


# ---------------------------------------------------------------- the verdict


def main_runs(runs: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """(system, connections) -> the run's figures, for the runs whose answer was checked right."""
    return {
        (r["system"], r["conns"]): r
        for r in runs.get("runs", [])
        if r.get("tag") == "main" and r.get("check", {}).get("ok")
    }


def goals(raw: dict[int, Any], by: dict[tuple[str, int], dict[str, Any]]) -> list[Goal]:
    def items(system: str, conns: int) -> float | None:
        run = by.get((system, conns))
        return float(run["ok_rps"]) if run else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    b64_items, b64_ms, b1_ms = raw[64]["items_per_s"], raw[64]["ms_per_call"], raw[1]["ms_per_call"]
    out: list[Goal] = []
    for c in CONNS[1:]:
        mine = items("modelyard", c)
        p99 = by.get(("modelyard", c), {}).get("p99_ms")
        out += [
            Goal(
                f"c={c}: modelyard / fastapi-batch items/s",
                ratio(mine, items("fastapi-batch", c)),
                THROUGHPUT_VS_BATCHER,
                "x",
            ),
            Goal(
                f"c={c}: modelyard / mlserver items/s",
                ratio(mine, items("mlserver", c)),
                THROUGHPUT_VS_MLSERVER,
                "x",
            ),
            Goal(f"c={c}: modelyard / raw batch-64 items/s", ratio(mine, b64_items), EFFICIENCY_VS_RAW, "x"),
            Goal(
                f"c={c}: modelyard binary tensors / raw batch-64 items/s",
                ratio(items(BINARY, c), b64_items),
                BINARY_EFFICIENCY_VS_RAW,
                "x",
            ),
            Goal(
                f"c={c}: modelyard p99 (<= {P99_VS_RAW_CALL:g} x raw batch-64 call {b64_ms:.2f} ms)",
                p99,
                P99_VS_RAW_CALL * b64_ms,
                "ms",
            ),
        ]
    p50 = by.get(("modelyard", 1), {}).get("p50_ms")
    target = P50_ONE_CONN_FACTOR * b1_ms + P50_ONE_CONN_SLACK_MS
    out.append(
        Goal(
            f"c=1: modelyard p50 (<= {P50_ONE_CONN_FACTOR:g} x raw batch-1 call {b1_ms:.2f} ms "
            f"+ {P50_ONE_CONN_SLACK_MS:g} ms)",
            p50,
            target,
            "ms",
        )
    )
    return out


def others_cores(run: dict[str, Any]) -> float:
    """CPU (cores) used during one measurement by processes other than the server and wrk."""
    busy = run["machine_busy_frac"] * run["ncpu"]
    return max(0.0, float(busy - run["server_cores"] - run.get("wrk_cores", 0.0)))


def table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    cells = [
        "  ".join(
            v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    return [cells[0], "-" * len(cells[0]), *cells[1:]]


def header(summary: dict[str, Any]) -> list[str]:
    h, raw = summary["host"], summary["raw"]
    guest = f", {h['hypervisor']} guest" if h["hypervisor"] else ""
    return [
        f"host: {h['model_name']}, {h['cpus']} CPUs ({h['sockets']} socket(s), {h['cores_per_socket']} "
        f"core(s)/socket, {h['threads_per_core']} thread(s)/core{guest}), {h['mem_gb']} GB",
        f"raw session.run, 1 intra-op thread: batch 1 {raw['batch1_ms']:.2f} ms/call; "
        f"batch 64 {raw['batch64_ms']:.2f} ms/call = {raw['batch64_items_per_s']:,.0f} items/s"
        + _before_after(raw),
        f"wrk closed loop, one item per request, {summary['duration_s']:g} s per measurement",
        "",
    ]


def _before_after(raw: dict[str, Any]) -> str:
    pair = raw.get("batch64_items_per_s_before_after")  # absent from reports of older runs
    if not pair:
        return ""
    return f" (mean of {pair[0]:,.0f} before and {pair[1]:,.0f} after the servers)"


def runs_table(summary: dict[str, Any], by: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    b64 = summary["raw"]["batch64_items_per_s"]
    rows: list[tuple[str, ...]] = [
        ("system", "conns", "items/s", "p50 ms", "p99 ms", "server cores", "/ raw b64", "others' cores")
    ]
    for s in (*SYSTEMS, BINARY):
        for c in CONNS if s != BINARY else CONNS[1:]:
            r = by.get((s, c))
            if r is None:
                rows.append((s, str(c), "failed", "", "", "", "", ""))
                continue
            figures = (r["ok_rps"], r["p50_ms"], r["p99_ms"], r["server_cores"], r["ok_rps"] / b64)
            rows.append(
                (
                    s,
                    str(c),
                    *(f"{v:,.{d}f}" for v, d in zip(figures, (0, 1, 1, 2, 2), strict=True)),
                    f"{others_cores(r):.2f}",
                )
            )
    lines = table(rows, right=set(range(1, 8)))
    lines += [
        f"  ({s} c={c}: {r['errors']} socket errors, {r['non2xx']} non-2xx answers)"
        for (s, c), r in by.items()
        if r["errors"] or r["non2xx"]
    ]
    return lines


def report(summary: dict[str, Any]) -> str:
    """The whole printout, from summary.json's contents alone (so `--report DIR` can print it again)."""
    by = {(r["system"], r["conns"]): r for r in summary["runs"].values()}
    verdict = [Goal(**{k: g[k] for k in ("what", "measured", "target", "unit")}) for g in summary["goals"]]
    lines = header(summary) + runs_table(summary, by)
    lines += ["", *table([("goal", "measured", "target", ""), *(g.row() for g in verdict)], right={1, 2})]
    lines += warnings(summary)
    return "\n".join(lines)


def warnings(summary: dict[str, Any]) -> list[str]:
    out: list[str] = []
    busy = summary["others_cores"]
    if max(busy["raw"], busy["servers"]) > BUSY_CORES:
        out.append(
            f"\nWARNING: the machine was busy. Other processes used up to {busy['servers']:.2f} cores "
            f"during a server measurement (others' cores above)\nand {busy['raw']:.2f} during the raw "
            f"limit (more than {BUSY_CORES:g} counts as busy): compare these figures only with a quiet run."
        )
    drift = summary["raw"].get("drift", 0.0)
    if drift > DRIFT:
        out.append(
            f"\nWARNING: the host's speed changed: the raw limit moved by {drift:.0%} between the start"
            f" and the end of the run (more than {DRIFT:.0%}); the ratios against raw are suspect."
        )
    for f in summary["failures"]:
        out.append(
            f"\nFAILED: {f.get('system')}: {f.get('error') or f.get('note')} (log: {f.get('log', '-')})"
        )
    return out


# ---------------------------------------------------------------- main


def mean_raw(before: dict[int, Any], after: dict[int, Any]) -> dict[int, Any]:
    """The raw limit as the mean of the runs before and after the servers' (per batch size).

    Some hosts change speed by a third within minutes (a neighbour on the same physical machine):
    a ratio against one raw run taken minutes before a server's run could be off by as much.
    """
    rows = {}
    for batch, row in before.items():
        other = after.get(batch, row)
        rows[batch] = row | {
            "items_per_s": (row["items_per_s"] + other["items_per_s"]) / 2,
            "ms_per_call": (row["ms_per_call"] + other["ms_per_call"]) / 2,
        }
    return rows


def summarize(
    before: dict[int, Any], after: dict[int, Any], raw_others: float, runs: dict[str, Any], duration: float
) -> dict[str, Any]:
    """Everything the report shows, JSON-ready (``runs``: the harness's, binary runs appended)."""
    raw = mean_raw(before, after)
    first, last = before[64]["items_per_s"], after[64]["items_per_s"]
    by = main_runs(runs)
    wrong = {r["system"]: r["check"] for r in runs.get("runs", []) if not r.get("check", {}).get("ok")}
    failures = runs.get("failures", []) + [
        {"system": s, "error": f"answer differs from the raw session's: {check}"}
        for s, check in wrong.items()
    ]
    return {
        "host": host(),
        "duration_s": duration,
        "raw": {
            "batch1_ms": raw[1]["ms_per_call"],
            "batch64_ms": raw[64]["ms_per_call"],
            "batch64_items_per_s": raw[64]["items_per_s"],
            "batch64_items_per_s_before_after": [first, last],
            "drift": round(abs(first - last) / max(first, last), 3),
        },
        "runs": {f"{s}@{c}": r for (s, c), r in by.items()},
        "goals": [asdict(g) | {"passed": g.passed} for g in goals(raw, by)],
        "others_cores": {
            "raw": round(raw_others, 2),
            "servers": round(max(map(others_cores, by.values()), default=0.0), 2),
        },
        "failures": failures,
        "complete": all((s, c) in by for s in SYSTEMS for c in CONNS)
        and all((BINARY, c) in by for c in CONNS[1:]),
    }


def measure(args: argparse.Namespace, harness: Path) -> int:
    duration = QUICK_DURATION_S if args.quick else args.duration
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    out = Path(args.out).resolve() if args.out else OUT / f"side-by-side-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    with exclusive():
        standard_model(harness)
        before, raw_others = raw_limit(harness, out, args.quick)
        runs = run_peers(harness, out, duration)
        runs.setdefault("runs", []).extend(binary_runs(out, duration))
        after, others_after = raw_limit(harness, out, args.quick, "raw-after")
    summary = summarize(before, after, max(raw_others, others_after), runs, duration)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    text = report(summary)
    (out / "report.txt").write_text(text + "\n")
    print(f"\n{text}\n\nfiles: {out}/ (raw.json, raw-after.json, runs.json, summary.json, report.txt)")
    return 0 if summary["complete"] else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--duration",
        type=float,
        default=HARNESS_DURATION_S,
        help=f"seconds of load per measurement (default {HARNESS_DURATION_S:g}, the harness's)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_DURATION_S:g} s per measurement and a shorter raw limit (checks, not figures)",
    )
    ap.add_argument("--harness", help=f"the peer harness folder (default {HARNESS})")
    ap.add_argument("--out", help="folder for the files (default benchmarks/out/side-by-side-<UTC time>)")
    ap.add_argument(
        "--report", metavar="DIR", help="print an earlier run's table again from DIR/summary.json"
    )
    ap.add_argument(
        "--setup",
        action="store_true",
        help=f"make the base, fastapi and mlserver venvs under {VENVS} (and wrk), then exit",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.report:
            summary = json.loads((Path(args.report) / "summary.json").read_text())
            print(report(summary))
            return 0 if summary["complete"] else 1
        harness = harness_dir(args.harness)
        if args.setup:
            setup_venvs()
            check_prerequisites(harness)
            print("ready: make bench")
            return 0
        check_prerequisites(harness)
        return measure(args, harness)
    except CannotRun as e:
        print(f"side_by_side: cannot run.\n{e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"side_by_side: {Path(e.cmd[1]).name} failed with status {e.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
