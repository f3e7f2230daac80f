"""What every act of the demo does alike: run the real CLI, start a server and wait for its URL,
stop it gracefully (exit code 0 or the demo fails)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_SCRIPT = Path(sys.executable).with_name("modelyard")  # the console script installed with the package
# `python -m modelyard.cli.main` works too, but runpy warns that modelyard.cli already imported it.
MODELYARD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "modelyard.cli.main"]
START_TIMEOUT_S = 120  # a server that has not announced its URL by then is killed


def abort(proc: subprocess.Popen[str]) -> None:
    """Kill a process started by :func:`launch` and everything it started (the gateway's workers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group holds its children too
    proc.wait()


def launch(
    args: list[str],
    shown_args: str,
    ready: str,
    *,
    env: dict[str, str] | None,
    cwd: Path | None,
    stderr: IO[str] | None = None,
    lines: list[str] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``modelyard ARGS``, print its output until the line starting with ``ready``; return its URL.

    ``stderr``: where its stderr goes (default: ours); ``lines``: collects the stdout lines read."""
    print("$ modelyard", shown_args)
    proc = subprocess.Popen(
        [*MODELYARD, *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    watchdog = threading.Timer(START_TIMEOUT_S, abort, [proc])  # never wait forever for the URL line
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print("  " + line.rstrip())
            if lines is not None:
                lines.append(line.rstrip())
            if line.startswith(ready):
                return proc, line.split()[-1]
    except BaseException:
        abort(proc)
        raise
    finally:
        watchdog.cancel()
    sys.exit(f"`modelyard {shown_args}` exited with code {proc.wait()} before serving")


def stop_server(proc: subprocess.Popen[str], what: str = "server", timeout_s: float = 30) -> None:
    """SIGTERM drains and stops the server; anything but exit code 0 fails the demo."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        abort(proc)
        sys.exit(f"the {what} did not stop within {timeout_s:g} s of SIGTERM")
    print(f"\n== {what} stopped gracefully (exit code {code})")
    if code != 0:
        sys.exit(f"the {what} exited with code {code}")


def shown(arg: str) -> str:
    """An argument as the reader would type it: paths inside the repository relative to it."""
    return arg.removeprefix(f"{ROOT}/")


def modelyard(
    *args: str, env: dict[str, str], cwd: Path, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, print the command and its output; fail unless it exits ``expect``."""
    print("$ modelyard", shlex.join(shown(arg) for arg in args))
    result = subprocess.run(
        [*MODELYARD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        print("  " + line.rstrip())
    if result.returncode != expect:
        sys.exit(f"`modelyard {' '.join(args)}` exited {result.returncode}, expected {expect}")
    return result


def act_processes(home: Path) -> dict[int, str]:
    """Every process whose environment says ``MODELYARD_HOME=home``, pid -> command line.

    That is whatever the act started, however deep: ``modelyard up``, its gateway and workers, and
    the replicas, which run in their own sessions and whose command lines do not name the home.
    """
    marker = f"MODELYARD_HOME={home}"
    found: dict[int, str] = {}
    if Path("/proc").is_dir():  # Linux: read each environment exactly
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                        argv = (entry / "cmdline").read_bytes().split(b"\0")
                        found[int(entry.name)] = b" ".join(argv).decode(errors="replace").strip()
        return found
    listing = subprocess.run(  # elsewhere (macOS): `ps e` appends each process' environment
        ["ps", "axeww", "-o", "pid=,command="], capture_output=True, text=True, timeout=10, check=True
    )
    for line in listing.stdout.splitlines():
        pid, _, command = line.strip().partition(" ")
        if f" {marker} " in f" {command} ":
            found[int(pid)] = command
    return found


def kill_leftovers(home: Path) -> list[int]:
    """SIGKILL every process of the act still there (after a failure); returns their ids."""
    left = sorted(act_processes(home))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


# Settings a user's shell may carry that would point an act at something outside its own home.
_OUTSIDE = (
    "MODELYARD_REGISTRY_DB",
    "MODELYARD_REGISTRY_URL",
    "MODELYARD_ARTIFACTS",
    "MODELYARD_CONTROL_URL",
    "MODELYARD_GATEWAY_LOG_SINK",
    "MODELYARD_ANALYSIS_LOG",
    "MODELYARD_TOKEN",
)


def act_env(home: Path) -> dict[str, str]:
    """An act's environment: registry, routes, logs and history under ``home``, nowhere else."""
    env = {**os.environ, "MODELYARD_HOME": str(home), "COLUMNS": "110"}  # COLUMNS: rich tables' width
    for name in _OUTSIDE:
        env.pop(name, None)
    return env


def after_failure(up: subprocess.Popen[str] | None, home: Path, log: Path) -> None:
    """Stop ``modelyard up`` (gracefully first: it stops what it started), kill whatever the act
    left, and show the end of ``up``'s stderr, so a failed act explains itself and leaves nothing."""
    if up is not None and up.poll() is None:
        up.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.wait(60)
        abort(up)
    left = kill_leftovers(home)
    if left:
        print(f"\n== killed processes left behind: {left}")
    if log.exists():
        print("\n== the last lines of modelyard up's stderr")
        for line in log.read_text().splitlines()[-20:]:
            print("  " + line)
