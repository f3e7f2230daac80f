"""Act 6 of the demo: a retrained model from `staging` towards production, on evidence
(docs/validation.md, docs/rollout.md).

A retrained version (the ONNX network with the sign of its last layer flipped: it answers every row
differently) is pushed to `staging`. `modelyard validate` runs it offline against `production` and
fails it, and `--require-validation` then refuses to make it `production`. The same candidate is
also deployed with a rollout, to show the online safety net: it is mirrored live traffic, its
answers are compared with production's, and the agreement gate sends all traffic back to v1 by
itself, before the candidate answers a single user.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import numpy_helper
from sklearn.datasets import load_iris

from demo_support import abort, act_env, act_processes, after_failure, launch, modelyard, stop_server

PREDICT = "/projects/mail/models/spam:predict"
GATES = "{min_requests: 20, min_agreement: 0.98, max_error_rate: 0.01}"


def flipped(model_file: Path, out: Path) -> Path:
    """``model_file`` with its last layer's weights negated: a "retrained" network whose most probable
    class is always another one (the softmax of negated logits ranks the classes backwards)."""
    model = onnx.load(str(model_file))
    last = next(init for init in model.graph.initializer if init.name == "w2")  # see build_models.py
    last.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(last), last.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def push_versions(model_file: Path, env: dict[str, str], scratch: Path) -> str:
    """Build 1.0 (production) and 2.0 (the retrained one, staging) and push them; returns the name."""
    name = ""
    retrained = flipped(model_file, scratch / "retrained" / model_file.name)
    sources = [(model_file, "1.0", "production"), (retrained, "2.0", "staging")]
    for number, (source, version, alias) in enumerate(sources, start=1):
        built = modelyard("build", str(source), "-o", "dist", "--version", version, env=env, cwd=scratch)
        package = Path(built.stdout.split()[0])
        name = package.name.removesuffix(".modelyard").rsplit("-", 1)[0]
        pushed = modelyard("registry", "push", str(package), "--alias", alias, env=env, cwd=scratch)
        if not re.search(rf"registered {re.escape(name)}/{number}\b", pushed.stdout):
            sys.exit(f"expected version {number} of {name}, got: {pushed.stdout}")
    return name


def validate_offline(name: str, env: dict[str, str], scratch: Path) -> None:
    """`modelyard validate` on the 150 iris flowers: it fails (exit 1), and the failed verdict,
    recorded on the version, keeps it from becoming production."""
    np.savez(scratch / "holdout.npz", x=load_iris().data.astype(np.float32))
    print("# holdout.npz: the 150 iris flowers, as input x")
    result = modelyard(
        "validate", f"{name}@staging", "--baseline", f"{name}@production", "--data", "holdout.npz",
        env=env, cwd=scratch, expect=1,
    )  # fmt: skip
    recorded = f"recorded the verdict (fail) on {name}/2"
    if "verdict: FAIL" not in result.stdout or recorded not in result.stderr:
        sys.exit("`modelyard validate` did not fail the candidate and record it")
    print("# exit code 1: the verdict is FAIL, recorded on version 2")
    print("\n== so version 2 cannot be made production")
    refused = modelyard(
        "registry", "alias", name, "production", "2", "--require-validation", env=env, cwd=scratch, expect=1
    )
    if "did not pass its latest validation" not in refused.stderr:
        sys.exit(f"the alias move was not refused for the failed verdict: {refused.stderr}")


def deploy_file(path: Path, name: str, *, candidate: bool) -> None:
    """v1 = production at 100 %; with ``candidate``, v2 = staging carrying a rollout from v1."""
    text = (
        "deployments:\n- project: mail\n  model: spam\n  versions:\n"
        f"  - version: v1\n    spec: {{uri: {name}@production, weight: 100}}\n"
    )
    if candidate:
        text += (
            f"  - version: v2\n    spec:\n      uri: {name}@staging\n      rollout:\n"
            "        baseline: v1\n"
            "        steps: [{mirror: 1.0, for: 2s}, {weight: 25, for: 2s}]\n"
            f"        gates: {GATES}\n"
        )
    path.write_text(text)
    print(f"$ cat {path.name}")
    for line in text.splitlines():
        print("  " + line)


class Traffic:
    """Users: a thread that sends iris rows to mail/spam through the gateway, about 25 a second,
    and counts the answers by status and by the version that answered (its
    ``x-modelyard-route-version`` header)."""

    def __init__(self, gateway: str) -> None:
        self.answers: Counter[tuple[int, str]] = Counter()
        self._gateway = gateway
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rows = load_iris().data.tolist()
        with httpx.Client(base_url=self._gateway, timeout=10, trust_env=False) as http:
            for i in range(1_000_000):
                if self._stop.wait(0.04):
                    return
                try:
                    response = http.post(PREDICT, json={"instances": [rows[i % len(rows)]]})
                    key = (response.status_code, response.headers.get("x-modelyard-route-version", "?"))
                except httpx.HTTPError as exc:
                    key = (0, type(exc).__name__)
                self.answers[key] += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


ROLLOUT = re.compile(r"^  #\d+ mail/spam: v2 from v1 \(canary\), (\w+)", re.MULTILINE)


def watch(env: dict[str, str], scratch: Path, timeout_s: float = 30) -> str:
    """``deploy status`` every half second until the rollout has ended; returns the rollout's line."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = modelyard("deploy", "status", env=env, cwd=scratch).stdout
        state = ROLLOUT.search(status)
        if state is None:
            sys.exit(f"`deploy status` shows no rollout of v2: {status}")
        if state.group(1) != "running":
            return next(line for line in status.splitlines() if line.strip().startswith("#1 mail/spam"))
        if time.monotonic() > deadline:
            sys.exit(f"the rollout still runs {timeout_s:g} s after apply")
        time.sleep(0.5)


def route_weights(env: dict[str, str], scratch: Path) -> None:
    """``route show``: the routing table the gateway follows; v1 must have it all, v2 nothing."""
    table = modelyard("route", "show", "mail/spam", env=env, cwd=scratch).stdout
    rows = re.findall(r"^\s*│ (v\d+)\s*│ (\d+)\s*│[^│]*│ *([^│ ]*) *│", table, re.MULTILINE)
    if sorted(rows) != [("v1", "100", ""), ("v2", "0", "")]:  # (version, weight, mirror)
        sys.exit(f"expected v1 at 100 and v2 at 0, not mirrored: {rows}")


def start_up(env: dict[str, str], scratch: Path) -> subprocess.Popen[str]:
    """`modelyard up` (its stderr to up.log); sets MODELYARD_CONTROL_URL and MODELYARD_GATEWAY in ``env``."""
    lines: list[str] = []
    with (scratch / "up.log").open("w") as log_file:
        up, gateway = launch(
            ["up", "--port", "0", "--gateway-port", "0"],
            "up --port 0 --gateway-port 0",
            "modelyard gateway: serving on ",
            env=env,
            cwd=scratch,
            stderr=log_file,
            lines=lines,
        )
    control = [line.split()[-1] for line in lines if line.startswith("modelyard control: serving on ")]
    if not control:
        abort(up)
        sys.exit(f"`modelyard up` did not print its control plane's URL: {lines}")
    env["MODELYARD_CONTROL_URL"], env["MODELYARD_GATEWAY"] = control[0], gateway
    print(f"$ export MODELYARD_CONTROL_URL={control[0]}")
    return up


def roll_out(name: str, env: dict[str, str], scratch: Path) -> None:
    """Production alone, then the candidate with a rollout under live traffic, rolled back by itself."""
    print("\n== production serves mail/spam; the route logs answers in full, so they can be compared")
    path = scratch / "deploy.yaml"
    deploy_file(path, name, candidate=False)
    modelyard("deploy", "apply", path.name, env=env, cwd=scratch)
    modelyard("route", "options", "mail/spam", "--log-payload", "full", env=env, cwd=scratch)

    print("\n== users send requests all along (a thread, about 25 a second)")
    with Traffic(env["MODELYARD_GATEWAY"]) as users:
        print("\n== the staging version joins with a rollout: mirrored first, then 25 % of requests")
        deploy_file(path, name, candidate=True)
        applied = modelyard("deploy", "apply", path.name, env=env, cwd=scratch)
        if "rollout #1: v2 from v1" not in applied.stdout:
            sys.exit("apply did not start the rollout")
        print("\n== watch it: each gate's value now against its threshold")
        ended = watch(env, scratch)
        time.sleep(1)  # a second more of users after the rollback
    if "rolled_back: step 1/2 (mirror 100% for 2s) failed: agreement" not in ended:
        sys.exit(f"expected a rollback by the agreement gate while mirrored, got: {ended}")

    print("\n== why, and on what figures: the history records every transition")
    history = modelyard("deploy", "history", env=env, cwd=scratch).stdout
    if "rolled_back by controller" not in history:
        sys.exit("`deploy history` does not record the rollback")
    print("\n== the routing table: v1 has all the traffic; v2 is kept, at weight 0, for inspection")
    route_weights(env, scratch)
    print("\n== what users got, by the version that answered (x-modelyard-route-version)")
    for (code, version), count in sorted(users.answers.items()):
        print(f"  {count} answers {code} from {version}")
    if set(users.answers) != {(200, "v1")}:
        sys.exit(f"users should have had only v1's answers, all 200: {dict(users.answers)}")
    print("# none from v2: it was rolled back while mirrored, before it answered a single user")


def rollout_act(model_file: Path) -> None:
    """A retrained version validated offline and rolled out online; both catch it."""
    print("\n\n== act 6: from staging towards production, on evidence; a bad candidate rolled back by itself")

    scratch = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    home = scratch / "home"
    env = act_env(home)
    up: subprocess.Popen[str] | None = None
    try:
        print(f"$ export MODELYARD_HOME={home}    # a throw-away home, deleted at the end")
        print(f"$ cd {scratch}")
        print("\n== production is version 1; a retrained version 2 arrives in staging")
        print("# (retrained/tiny_mlp.onnx: the same network with its last layer's sign flipped)")
        name = push_versions(model_file, env, scratch)
        print("\n== offline first: run both on a holdout set and compare")
        validate_offline(name, env, scratch)

        print("\n== online too: a deploy file may name tiny_mlp@staging anyway; the rollout guards it")
        print("   `modelyard up`: the control plane (it runs the rollout) and the gateway")
        up = start_up(env, scratch)
        roll_out(name, env, scratch)
        stop_server(up, "modelyard up (the gateway and the replicas with it)", timeout_s=60)
        left = act_processes(home)
        if left:
            sys.exit(f"processes left after `modelyard up` stopped: {left}")
        print("== no process of the act is left")
    except BaseException:
        after_failure(up, home, scratch / "up.log")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"\n== removed {scratch}")
