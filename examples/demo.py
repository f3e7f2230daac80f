"""The 60-second tour: build example models, serve them with `modelyard serve`, send requests.

Run it with `make demo`. Six acts, each printed as the commands it runs and what they answer:

1. one server process holding three models (an ONNX network, a scikit-learn classifier and an
   author-written class), called over the Open Inference Protocol (plain JSON and Triton's own
   client) and the TF-Serving API, then shut down gracefully;
2. the same ONNX network as a versioned package: `modelyard build`, `verify` (and a tampered copy
   refused), `registry push` twice (versions 1 and 2, the bytes stored once), `registry alias`,
   `list` and `show`, then `modelyard serve tiny_mlp@production` and one inference request;
3. the gateway: two model servers (the ONNX network and the scikit-learn classifier, both named
   `spam`) as versions v1 and v2 of `mail/spam`; `modelyard route set mail/spam v1=90 v2=10`,
   `route replicas` and `route show`; `modelyard gateway serve` (one worker per core); 200 requests
   through it, split 90/10 as counted from each answer's `x-modelyard-route-version` header; one request
   pinned to v2 with the SDK (`modelyard.Client(url).predict(..., version="v2")`); then, while it
   runs, `route mirror mail/spam v2` and `route set mail/spam v1=100`: within a second and without a
   restart, requests are answered by v1 and copied to v2, one primary and one mirror record per
   request id in the inference log (`$MODELYARD_HOME/logs/inference.jsonl`); and an excerpt of the
   gateway's `/metrics`;
4. the platform: the ONNX network built as packages 1.0 and 2.0 and pushed (registry versions 1 and
   2, `production` -> 1); `modelyard up` (control plane and gateway); a deploy file with `mail/spam`
   v1 = `tiny_mlp@production` (2 replicas, weight 80) and v2 = `tiny_mlp/2` (1 replica, weight 20):
   `modelyard deploy diff`, `apply` and `status`; 200 requests through the gateway, split 80/20; the
   weights changed to 50/50 in the file, `diff` (a field-level UPDATE), `apply`, 100 requests split
   50/50; `deploy history`, `deploy rollback 1` and 100 requests split 80/20 again, by the same
   replicas (a weight change restarts none); then SIGTERM to `modelyard up`, which stops the gateway
   and the replicas with it, and no process of the act is left;
5. access control (`demo_access.py`): the first admin token made locally, `modelyard registry serve`,
   a call without a token refused, a deployer and a viewer token handed out over HTTP, the viewer
   refused a push, CI's push and alias move recorded under its token's name (not the `--user` it
   claims), a cross-origin and a form-typed POST refused, and a revoked token refused at once;
6. from staging towards production, on evidence (`demo_rollout.py`): `production` -> 1 and a
   retrained version 2 (the last layer's sign flipped) pushed to `staging`; `modelyard validate
   tiny_mlp@staging --baseline tiny_mlp@production` fails it offline (the table, exit code 1, the
   verdict recorded) and `registry alias ... --require-validation` refuses it; then, under live
   traffic through `modelyard up`'s gateway, a deploy file gives v2 = `tiny_mlp@staging` a rollout
   from v1 = `tiny_mlp@production` (mirror 100 % for 2 s, then 25 % for 2 s; gates on agreement and
   error rate), `deploy status` shows the gates as they read, and the agreement gate rolls v2 back
   by itself while it is still mirrored: `deploy history` gives the reason and its figures, `route
   show` has v1 at 100 and v2 at 0, and no user got an answer from v2.

Acts 2 to 6 run the real CLI in subprocesses, each act with `MODELYARD_HOME` set to its own
temporary folder that is deleted at the end, so nothing under your own home is touched. Every server,
gateway and `modelyard up` is stopped with SIGTERM and must exit 0; any step that fails makes the demo
exit non-zero.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.http as triton

from modelyard import Client  # the SDK; `modelyard(...)` below runs the CLI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import build_models  # noqa: E402
from demo_access import access_act  # noqa: E402
from demo_rollout import rollout_act  # noqa: E402
from demo_support import abort, act_env, act_processes, after_failure, launch, modelyard, stop_server  # noqa: E402


def free_port() -> int:
    """A port that was free a moment ago (for a server that does not announce every URL it serves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    paths: list[str],
    *,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``modelyard serve PATHS... OPTIONS... --port 0``; returns the process and the URL it serves on."""
    names = [Path(p).name if "/" in p else p for p in paths]
    return launch(
        ["serve", *paths, *options, "--port", "0", "--log-level", "warning"],
        shlex.join(["serve", *names, *options, "--port", "0"]),
        "modelyard: serving on ",
        env=env,
        cwd=cwd,
    )


def ok(response: httpx.Response) -> object:
    """The JSON body of a successful response; any other status fails the demo."""
    if response.status_code != 200:
        sys.exit(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()


def show(title: str, payload: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(payload, indent=2)[:1200])


def tour(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
        show("GET /health/ready", ok(http.get("/health/ready")))
        show(
            "GET /v2/models/tiny_mlp (signature read from the ONNX file)",
            ok(http.get("/v2/models/tiny_mlp")),
        )
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 4],
                    "datatype": "FP32",
                    "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
                }
            ]
        }
        show("POST /v2/models/tiny_mlp/infer (JSON)", ok(http.post("/v2/models/tiny_mlp/infer", json=body)))
        iris = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 4],
                    "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
                }
            ]
        }
        show("POST /v2/models/iris/infer (scikit-learn)", ok(http.post("/v2/models/iris/infer", json=iris)))
        texts = {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": ["I love it, great", "awful and slow"],
                }
            ]
        }
        show(
            "POST /v2/models/sentiment/infer (author's class)",
            ok(http.post("/v2/models/sentiment/infer", json=texts)),
        )
        tfs = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
        show(
            "POST /v1/models/tiny_mlp:predict (TF-Serving API)",
            ok(http.post("/v1/models/tiny_mlp:predict", json=tfs)),
        )
        bad = {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}
        response = http.post("/v2/models/tiny_mlp/infer", json=bad)
        if response.status_code != 400:
            sys.exit(f"a bad request got {response.status_code}, not 400: {response.text}")
        show(f"a bad request gets a clear error ({response.status_code})", response.json())
        metrics = [
            line
            for line in http.get("/metrics").raise_for_status().text.splitlines()
            if line.startswith("modelyard_requests_total")
        ]
        show("GET /metrics (excerpt)", metrics[:6])

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        x = triton.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.array([[5.9, 3.0, 5.1, 1.8]], dtype=np.float32))  # binary on the wire
        result = client.infer("tiny_mlp", [x], outputs=[triton.InferRequestedOutput("probs")])
        show("tritonclient.http, unmodified, binary tensors", {"probs": result.as_numpy("probs").tolist()})
    finally:
        client.close()


def tamper(package: Path, copy: Path) -> str:
    """Write ``copy``: the same tar, manifest unchanged, with one byte of the first model file flipped.

    Returns the member changed. Only the member's bytes differ (same name, size and header), so the
    copy is still a well-formed package and only the checksum can tell.
    """
    changed = ""
    with tarfile.open(package, "r:gz") as source, tarfile.open(copy, "w:gz") as target:
        for member in source.getmembers():
            stream = source.extractfile(member)
            data = stream.read() if stream is not None else b""
            if not changed and member.name.startswith("files/") and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
                changed = member.name
            target.addfile(member, io.BytesIO(data))
    if not changed:
        sys.exit(f"{package} holds no file to tamper with")
    return changed


def registry_act(model_file: Path) -> None:
    """Package the model, verify it, push it twice, alias it and serve it by reference."""
    print("\n\n== act 2: a versioned package, the registry, and `serve name@alias`")
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    home = scratch / "home"
    env = act_env(home)
    try:
        print(f"$ export MODELYARD_HOME={home}    # a throw-away home, deleted at the end")
        print(f"$ cd {scratch}")

        print("\n== build a package from the ONNX file, and verify it")
        built = modelyard(
            "build", str(model_file), "-o", "dist", "--description", "tiny demo MLP", env=env, cwd=scratch
        )
        package = Path(built.stdout.split()[0])
        package = package if package.is_absolute() else scratch / package
        name = package.name.removesuffix(".modelyard").rsplit("-", 1)[0]
        modelyard("verify", str(package.relative_to(scratch)), env=env, cwd=scratch)

        print("\n== a tampered copy is refused, naming the file")
        tampered = scratch / "dist" / "tampered.modelyard"
        member = tamper(package, tampered)
        print(f"# {tampered.name}: {package.name} with one byte of {member} flipped")
        refused = modelyard("verify", str(tampered.relative_to(scratch)), env=env, cwd=scratch, expect=1)
        if Path(member).name not in refused.stderr:
            sys.exit(f"`modelyard verify` did not name {member}: {refused.stderr}")

        print("\n== push it twice: versions 1 and 2, the same bytes stored once")
        relative = str(package.relative_to(scratch))
        for number, (accuracy, description) in enumerate(
            [("0.93", "first training run"), ("0.95", "retrained on more data")], start=1
        ):
            pushed = modelyard(
                "registry", "push", relative, "--metric", f"accuracy={accuracy}",
                "--description", description, env=env, cwd=scratch,
            )  # fmt: skip
            if not re.search(rf"registered {re.escape(name)}/{number}\b", pushed.stdout):
                sys.exit(f"expected version {number} of {name}, got: {pushed.stdout}")
        stored = sorted(p for p in (home / "artifacts").rglob("*") if p.is_file())
        print(f"# artifacts stored: {len(stored)}")
        for path in stored:
            print(f"  $MODELYARD_HOME/{path.relative_to(home)}")
        if len(stored) != 1:
            sys.exit(f"expected the bytes stored once, found {len(stored)} artifacts")

        print("\n== point the production alias at version 1, then look")
        modelyard("registry", "alias", name, "production", "1", env=env, cwd=scratch)
        modelyard("registry", "list", env=env, cwd=scratch)
        modelyard("registry", "list", name, env=env, cwd=scratch)
        modelyard("registry", "show", f"{name}@production", env=env, cwd=scratch)

        print(f"\n== serve {name}@production: the registry says which file")
        proc, url = start_server([f"{name}@production"], env=env, cwd=scratch)
        try:
            with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
                meta = ok(http.get(f"/v2/models/{name}"))
                if not isinstance(meta, dict) or meta.get("versions") != ["1"]:
                    sys.exit(f"expected version 1 to be served, got {meta}")
                show(
                    f"GET /v2/models/{name} (served as the registry's version 1)",
                    {key: meta[key] for key in ("name", "versions", "platform")},
                )
                body = {
                    "inputs": [
                        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
                    ]
                }
                show(
                    f"POST /v2/models/{name}/versions/1/infer",
                    ok(http.post(f"/v2/models/{name}/versions/1/infer", json=body)),
                )
        except BaseException:
            abort(proc)
            raise
        stop_server(proc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"\n== removed {scratch}")


ROW = [5.1, 3.5, 1.4, 0.2]  # one iris flower: both models of act 3 take four numbers
PREDICT = "/projects/mail/models/spam:predict"  # a TF-Serving body names no input: it fits either version


def predict_many(http: httpx.Client, count: int) -> tuple[Counter[str], dict[str, object], list[str]]:
    """Send ``count`` requests for mail/spam; return how many each version answered (its
    ``x-modelyard-route-version`` header), each version's first answer, and the request ids."""
    split: Counter[str] = Counter()
    answers: dict[str, object] = {}
    request_ids: list[str] = []
    for _ in range(count):
        response = http.post(PREDICT, json={"instances": [ROW]})
        body = ok(response)
        version = response.headers.get("x-modelyard-route-version", "(no header)")
        split[version] += 1
        answers.setdefault(version, body)
        request_ids.append(response.headers.get("x-request-id", ""))
    return split, answers, request_ids


def show_split(split: Counter[str], count: int) -> None:
    print("  " + "  ".join(f"{v}: {n} ({100 * n / count:.1f}%)" for v, n in sorted(split.items())))


def routed(admin: httpx.Client) -> tuple[int, dict[str, dict[str, Any]]]:
    """The revision of the routing table the gateway uses now (``GET /-/routing``, on the gateway's
    admin listener: it lists replica URLs), and mail/spam's versions in it."""
    table = ok(admin.get("/-/routing"))
    assert isinstance(table, dict)
    route = next((r for r in table["routes"] if (r["project"], r["model"]) == ("mail", "spam")), None)
    return table["revision"], {v["version"]: v for v in route["versions"]} if route else {}


def log_pairs(path: Path, request_ids: list[str], timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """Each request id's inference-log records by role, once every id has a primary and a mirror one.

    Mirrored copies go out after the answer, and each worker writes its records in the background:
    read the file again (for at most ``timeout_s``) until they are all there.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pairs: dict[str, dict[str, Any]] = {request_id: {} for request_id in request_ids}
        for line in path.read_text().splitlines() if path.exists() else []:
            with contextlib.suppress(ValueError):  # the last line may be half written
                record = json.loads(line)
                if record.get("request_id") in pairs:
                    pairs[record["request_id"]][record["role"]] = record
        missing = [rid for rid, roles in pairs.items() if not {"primary", "mirror"} <= roles.keys()]
        if not missing:
            return pairs
        if time.monotonic() > deadline:
            sys.exit(
                f"{path}: {len(missing)} requests lack a primary or a mirror record after {timeout_s:g} s"
            )
        time.sleep(0.1)


def live_change(admin: httpx.Client, gateway: subprocess.Popen[str], env: dict[str, str], cwd: Path) -> None:
    """Mirror mail/spam to v2 and send it all to v1; the running gateway follows within a second."""
    print("\n== a live change: copy every request to v2, answer every one from v1")
    before, _ = routed(admin)
    modelyard("route", "mirror", "mail/spam", "v2", env=env, cwd=cwd)
    modelyard("route", "set", "mail/spam", "v1=100", env=env, cwd=cwd)
    time.sleep(0.5)
    deadline = time.monotonic() + 5  # the gateway reads the table every 0.25 s: 0.5 s is plenty
    while True:
        revision, versions = routed(admin)
        v1, v2 = versions.get("v1", {}), versions.get("v2", {})
        if v1.get("weight") == 100 and v2.get("weight") == 0 and v2.get("mirror"):
            break
        if time.monotonic() > deadline:
            sys.exit(f"5.5 s after the change the gateway still routes by {versions}")
        time.sleep(0.1)
    if gateway.poll() is not None:
        sys.exit(f"the gateway exited with code {gateway.returncode}")
    print(f"# 0.5 s later the gateway routes by revision {revision} of the table (it was {before}):")
    print(f"# no restart, the same process (pid {gateway.pid}) on the same port")


def show_mirror_log(log: Path, home: Path, request_ids: list[str]) -> None:
    """Each request's primary (v1) and mirror (v2) records in the inference log, a few side by side."""
    pairs = log_pairs(log, request_ids)
    expected = {"primary": ("v1", 200), "mirror": ("v2", 200)}
    wrong = [
        record
        for roles in pairs.values()
        for role, record in roles.items()
        if (record["version"], record["status"]) != expected[role]
    ]
    if wrong:
        sys.exit(f"unexpected inference-log records: {wrong}")
    print(f"\n== $MODELYARD_HOME/{log.relative_to(home)}: a primary and a mirror record per request")
    print(f"  {'request_id':<32}  {'role':<7}  {'version':<7}  {'status':<6}  latency_ms")
    for request_id in request_ids[:3]:
        for role in ("primary", "mirror"):
            record = pairs[request_id][role]
            version, status, latency = record["version"], record["status"], record["latency_ms"]
            print(f"  {request_id:<32}  {role:<7}  {version:<7}  {status:<6}  {latency:.1f}")
    differ = sum(
        roles["primary"]["response_hash"] != roles["mirror"]["response_hash"] for roles in pairs.values()
    )
    print(f"  ... {len(pairs)} of {len(pairs)} requests: primary v1 and mirror v2 with the same request_id,")
    print(f"  both 200; the two versions' answers differ for {differ} of them (response_hash)")


def gateway_act(v1_file: Path, v2_file: Path) -> None:
    """Two model servers behind the gateway: a weighted split, a pinned call, a live change, a mirror."""
    print("\n\n== act 3: the gateway: a 90/10 split, a pinned version, a live change and a mirror")
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    home = scratch / "home"
    env = act_env(home)
    running: list[tuple[subprocess.Popen[str], str]] = []  # stopped last first
    try:
        print(f"$ export MODELYARD_HOME={home}    # a throw-away home, deleted at the end")
        print(f"$ cd {scratch}")

        print("\n== two model servers, two different models as versions v1 and v2 of mail/spam")
        urls: dict[str, str] = {}
        for version, model_file in (("v1", v1_file), ("v2", v2_file)):
            proc, urls[version] = start_server(
                [str(model_file)], options=("--name", "spam"), env=env, cwd=scratch
            )
            running.append((proc, f"model server {version} ({model_file.name})"))

        print("\n== route mail/spam: 90% of its requests to v1, 10% to v2")
        modelyard("route", "set", "mail/spam", "v1=90", "v2=10", env=env, cwd=scratch)
        for version, url in urls.items():
            modelyard("route", "replicas", "mail/spam", version, url, env=env, cwd=scratch)
        modelyard("route", "show", "mail/spam", env=env, cwd=scratch)

        print(f"\n== the gateway: one worker process per core ({os.cpu_count()} here), the routing table")
        print("   above, and its inference log in $MODELYARD_HOME/logs/inference.jsonl (the default)")
        print("   (/-/routing and /metrics name replica URLs: they are served on the admin port only)")
        gateway_lines: list[str] = []
        gateway, url = launch(
            ["gateway", "serve", "--port", "0", "--admin-port", "0"],
            "gateway serve --port 0 --admin-port 0",
            "modelyard gateway: serving on ",
            env=env,
            cwd=scratch,
            lines=gateway_lines,
        )
        running.append((gateway, "gateway"))
        admin_url = next(line.split()[-1] for line in gateway_lines if "gateway-admin: serving on" in line)

        with (
            httpx.Client(base_url=url, timeout=10, trust_env=False) as http,  # one keep-alive connection
            httpx.Client(base_url=admin_url, timeout=10, trust_env=False) as admin,
        ):
            count = 200
            print(f"\n== {count} requests: POST {PREDICT} {json.dumps({'instances': [ROW]})}")
            split, answers, _ = predict_many(http, count)
            show_split(split, count)
            print("  (counted from each answer's x-modelyard-route-version header)")
            for version, body in sorted(answers.items()):
                print(f"  {version} answers {json.dumps(body)}")
            if set(split) != {"v1", "v2"} or abs(split["v2"] / count - 0.1) > 0.05:
                sys.exit(f"expected about 90% v1 and 10% v2, got {dict(split)}")

            print("\n== one request pinned to v2, with the Python SDK")
            inputs = {"input": [[6.7, 3.0, 5.2, 2.3]]}  # v2's input name: the pin makes that safe
            print(">>> import modelyard")
            print(f'>>> client = modelyard.Client("{url}")')
            print(f'>>> client.predict("mail/spam", {json.dumps(inputs)}, version="v2")')
            with Client(url, timeout=10, trust_env=False) as client:
                outputs = client.predict("mail/spam", inputs, version="v2")
            with np.printoptions(precision=4, suppress=True):
                print(outputs)
            if "predict_proba" not in outputs:
                sys.exit(f"the request pinned to v2 was not answered by {v2_file.name}: {outputs}")

            live_change(admin, gateway, env, scratch)
            count = 10
            print(f"\n== {count} requests: each answered by v1 and copied to v2, whose answer is only logged")
            split, _, request_ids = predict_many(http, count)
            show_split(split, count)
            if split != {"v1": count}:
                sys.exit(f"expected every answer from v1, got {dict(split)}")
            show_mirror_log(home / "logs" / "inference.jsonl", home, request_ids)

            metrics = [
                line
                for line in admin.get("/metrics").raise_for_status().text.splitlines()
                if line.startswith("modelyard_gateway_requests_total{")
            ]
            print("\n== GET /metrics (excerpt: every worker's counts added up)")
            for line in metrics:
                print("  " + line)
            if not metrics:
                sys.exit("the gateway's /metrics has no modelyard_gateway_requests_total line")

        while running:
            proc, what = running.pop()
            stop_server(proc, what)
    except BaseException:
        for proc, _ in running:
            abort(proc)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"\n== removed {scratch}")


def deploy_yaml(name: str, v1_weight: int, v2_weight: int) -> str:
    """The deploy file of act 4: v1 is whatever the registry's production alias names, v2 version 2."""
    return (
        "deployments:\n"
        "- project: mail\n"
        "  model: spam\n"
        "  versions:\n"
        "  - version: v1\n"
        f"    spec: {{uri: {name}@production, replicas: 2, weight: {v1_weight}}}\n"
        "  - version: v2\n"
        f"    spec: {{uri: {name}/2, replicas: 1, weight: {v2_weight}}}\n"
    )


def write_deploy_file(path: Path, text: str) -> None:
    path.write_text(text)
    print(f"$ cat {path.name}")
    for line in text.splitlines():
        print("  " + line)


STATUS_LINE = re.compile(r"^\s*mail/spam (\S+) #(\d+): (\S+) (\S+) \(restarts (\d+)\)$")


def replicas_of(status: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], tuple[str, str, int]]:
    """``modelyard deploy status``'s replicas: (version, replica id) -> (state, URL, restarts)."""
    found: dict[tuple[str, str], tuple[str, str, int]] = {}
    for line in status.stdout.splitlines():
        match = STATUS_LINE.match(line)
        if match:
            version, replica, state, url, restarts = match.groups()
            found[version, replica] = (state, url, int(restarts))
    ready = [key for key, (state, _, _) in found.items() if state == "ready"]
    if sorted(ready) != [("v1", "0"), ("v1", "1"), ("v2", "0")]:
        sys.exit(f"expected replicas v1 #0, v1 #1 and v2 #0, all ready; `deploy status` says {found}")
    return found


def wait_for_weights(admin: httpx.Client, weights: dict[str, int]) -> None:
    """Wait (at most 5 s) until the gateway routes mail/spam by ``weights``: it reads the table every
    0.25 s, and apply returns once the table is written."""
    deadline = time.monotonic() + 5
    while True:
        _, versions = routed(admin)
        if {version: v.get("weight") for version, v in versions.items()} == weights:
            # The admin answer comes from one gateway worker; each worker reads the table on its own
            # 0.25 s tick, so give the others two ticks before sending (else a few requests still
            # go by the old weights and the split looks off).
            time.sleep(0.6)
            return
        if time.monotonic() > deadline:
            sys.exit(f"5 s after apply the gateway still routes by {versions}")
        time.sleep(0.1)


def send_and_check(http: httpx.Client, admin: httpx.Client, count: int, weights: dict[str, int]) -> None:
    """``count`` requests through the gateway; fail unless each version's share is within 5 points."""
    wait_for_weights(admin, weights)
    print(f"\n== {count} requests: POST {PREDICT} {json.dumps({'instances': [ROW]})}")
    split, _, _ = predict_many(http, count)
    show_split(split, count)
    total = sum(weights.values())
    off = {v: 100 * split[v] / count - 100 * w / total for v, w in weights.items()}
    if set(split) != set(weights) or max(abs(points) for points in off.values()) > 5:
        sys.exit(f"expected a split of {weights}, got {dict(split)}")


def platform_act(model_file: Path) -> None:
    """`modelyard up`, a deploy file applied, changed and rolled back, and nothing left running."""
    print("\n\n== act 4: the platform: `modelyard up`, a deploy file, apply, change, roll back")
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    home = scratch / "home"
    env = act_env(home)
    up_log = scratch / "up.log"  # its stderr: uvicorn's INFO lines, and any warning
    up: subprocess.Popen[str] | None = None
    try:
        print(f"$ export MODELYARD_HOME={home}    # a throw-away home, deleted at the end")
        print(f"$ cd {scratch}")

        print("\n== the ONNX network packaged twice, as 1.0 and 2.0: registry versions 1 and 2")
        print("# (the examples have no second model with the same input name and shape: v2 is the same")
        print("#  network, so both answer alike; the x-modelyard-route-version header tells them apart)")
        name = ""
        for number, version in enumerate(("1.0", "2.0"), start=1):
            built = modelyard(
                "build", str(model_file), "-o", "dist", "--version", version, env=env, cwd=scratch
            )
            package = Path(built.stdout.split()[0])
            name = package.name.removesuffix(".modelyard").rsplit("-", 1)[0]
            pushed = modelyard("registry", "push", str(package), env=env, cwd=scratch)
            if not re.search(rf"registered {re.escape(name)}/{number}\b", pushed.stdout):
                sys.exit(f"expected version {number} of {name}, got: {pushed.stdout}")
        modelyard("registry", "alias", name, "production", "1", env=env, cwd=scratch)

        print("\n== `modelyard up`: the control plane (registry, routing table, deploy API, replicas)")
        print("   and the gateway beside it; its stderr (uvicorn's log) goes to up.log")
        lines: list[str] = []
        admin_port = free_port()  # `up` does not print the gateway's admin URL: choose its port
        with up_log.open("w") as log_file:
            up, gateway_url = launch(
                ["up", "--port", "0", "--gateway-port", "0", "--gateway-admin-port", str(admin_port)],
                f"up --port 0 --gateway-port 0 --gateway-admin-port {admin_port}",
                "modelyard gateway: serving on ",
                env=env,
                cwd=scratch,
                stderr=log_file,
                lines=lines,
            )
        control = [line for line in lines if line.startswith("modelyard control: serving on ")]
        if not control:
            sys.exit(f"`modelyard up` did not print its control plane's URL: {lines}")
        env["MODELYARD_CONTROL_URL"] = control[0].split()[-1]
        print(f"$ export MODELYARD_CONTROL_URL={env['MODELYARD_CONTROL_URL']}")

        print("\n== what should run, in a file: v1 (the production alias) 80%, v2 (version 2) 20%")
        deploy_file = scratch / "deploy.yaml"
        write_deploy_file(deploy_file, deploy_yaml(name, 80, 20))
        modelyard("deploy", "diff", deploy_file.name, env=env, cwd=scratch)
        modelyard("deploy", "apply", deploy_file.name, env=env, cwd=scratch)
        before = replicas_of(modelyard("deploy", "status", env=env, cwd=scratch))

        admin_url = f"http://127.0.0.1:{admin_port}"
        with (
            httpx.Client(base_url=gateway_url, timeout=10, trust_env=False) as http,
            httpx.Client(base_url=admin_url, timeout=10, trust_env=False) as admin,
        ):
            send_and_check(http, admin, 200, {"v1": 80, "v2": 20})

            print("\n== change the split to 50/50 in the file: only the weights differ")
            write_deploy_file(deploy_file, deploy_yaml(name, 50, 50))
            modelyard("deploy", "diff", deploy_file.name, env=env, cwd=scratch)
            modelyard("deploy", "apply", deploy_file.name, env=env, cwd=scratch)
            send_and_check(http, admin, 100, {"v1": 50, "v2": 50})

            print("\n== every apply is recorded with its file: roll back to the first")
            modelyard("deploy", "history", env=env, cwd=scratch)
            modelyard("deploy", "rollback", "1", env=env, cwd=scratch)
            send_and_check(http, admin, 100, {"v1": 80, "v2": 20})

        after = replicas_of(modelyard("deploy", "status", env=env, cwd=scratch))
        if after != before:
            sys.exit(f"the replicas changed although only weights did: {before} -> {after}")
        print("# the same three replicas on the same URLs, none restarted: weights move traffic only")

        processes = act_processes(home)
        replicas = sorted(pid for pid, command in processes.items() if " modelyard serve " in command)
        print(f"\n# the act's processes: modelyard up (pid {up.pid}), the gateway and its workers, and")
        print(f"# {len(replicas)} `modelyard serve` replicas (pids {', '.join(map(str, replicas))}),")
        print("# each in its own session")
        if up.pid not in processes or len(replicas) != len(after):
            sys.exit(f"expected `modelyard up` and {len(after)} replicas, found {processes}")
        stop_server(up, "modelyard up (the gateway and the replicas with it)", timeout_s=60)
        left = act_processes(home)
        if left:
            sys.exit(f"processes left after `modelyard up` stopped: {left}")
        for _, url, _ in after.values():
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/health/live", timeout=2, trust_env=False)
                sys.exit(f"{url} still answers after `modelyard up` stopped")
        print(f"== no process of the act is left: replicas {', '.join(map(str, replicas))} are gone and")
        print("   their URLs refuse connections")
        for line in up_log.read_text().splitlines():
            if not line.startswith("INFO:"):
                print(f"  up.log: {line}")  # anything above uvicorn's INFO lines (none on a good run)
    except BaseException:
        after_failure(up, home, up_log)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"\n== removed {scratch}")


def main() -> None:
    model_files = build_models.main()
    paths = [str(p) for p in model_files] + [f"{HERE / 'sentiment.py'}:Sentiment"]
    print("== act 1: three models, one server, every protocol\n")
    proc, url = start_server(paths)
    try:
        tour(url)
    except BaseException:
        abort(proc)
        raise
    stop_server(proc)
    onnx_file = next(p for p in model_files if p.suffix == ".onnx")
    registry_act(onnx_file)
    gateway_act(onnx_file, next(p for p in model_files if p.suffix == ".joblib"))
    platform_act(onnx_file)
    access_act(onnx_file)
    rollout_act(onnx_file)


if __name__ == "__main__":
    main()
