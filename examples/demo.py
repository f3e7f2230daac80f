"""The 60-second tour: build example models, serve them with `modelyard serve`, send requests.

Run it with `make demo`. Two acts, each printed as the commands it runs and what they answer:

1. one server process holding three models (an ONNX network, a scikit-learn classifier and an
   author-written class), called over the Open Inference Protocol (plain JSON and Triton's own
   client) and the TF-Serving API, then shut down gracefully;
2. the same ONNX network as a versioned package: `modelyard build`, `verify` (and a tampered copy
   refused), `registry push` twice (versions 1 and 2, the bytes stored once), `registry alias`,
   `list` and `show`, then `modelyard serve tiny_mlp@production` and one inference request. Every
   step is the real CLI in a subprocess, with `MODELYARD_HOME` set to a temporary folder that is
   deleted at the end, so nothing under your own home is touched.

Any step that fails makes the demo exit non-zero.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import build_models  # noqa: E402

_SCRIPT = Path(sys.executable).with_name("modelyard")  # the console script installed with the package
# `python -m modelyard.cli.main` works too, but runpy warns that modelyard.cli already imported it.
MODELYARD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "modelyard.cli.main"]
START_TIMEOUT_S = 120  # a server that has not announced its URL by then is killed


def start_server(
    paths: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    command = [*MODELYARD, "serve", *paths, "--port", "0", "--log-level", "warning"]
    print("$ modelyard serve", " ".join(Path(p).name if "/" in p else p for p in paths), "--port 0")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    watchdog = threading.Timer(START_TIMEOUT_S, proc.kill)  # never wait forever for the URL line
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print("  " + line.rstrip())
            if line.startswith("modelyard: serving on "):
                return proc, line.split()[-1]
    finally:
        watchdog.cancel()
    sys.exit(f"the server exited with code {proc.wait()} before serving")


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM drains and stops the server; anything but exit code 0 fails the demo."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        sys.exit("the server did not stop within 30 s of SIGTERM")
    print(f"\n== server stopped gracefully (exit code {code})")
    if code != 0:
        sys.exit(f"the server exited with code {code}")


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
    env = {**os.environ, "MODELYARD_HOME": str(home), "COLUMNS": "110"}  # COLUMNS: rich tables' width
    env.pop("MODELYARD_REGISTRY_URL", None)  # the local registry under MODELYARD_HOME, never a server
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
            proc.kill()
            proc.wait()
            raise
        stop_server(proc)
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
        proc.kill()
        proc.wait()
        raise
    stop_server(proc)
    registry_act(next(p for p in model_files if p.suffix == ".onnx"))


if __name__ == "__main__":
    main()
