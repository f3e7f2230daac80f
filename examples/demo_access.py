"""Act 5 of the demo: access control on a control plane (docs/security.md).

The first admin token is made on the control plane's machine, straight into its database; from
then on nothing reaches the API without a token. An admin hands out a deployer token (CI) and a
viewer token (a dashboard); the viewer may look but not push; CI pushes and moves `production`,
and the history records the token's name, not the `--user` the client claims; a web page cannot
make a browser change anything; a revoked token stops working at once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx

from demo_support import act_env, launch, modelyard, stop_server


def _as(token: str, env: dict[str, str]) -> dict[str, str]:
    return {**env, "MODELYARD_TOKEN": token}


def _token(result: str) -> str:
    return result.strip().splitlines()[-1]


def _refused(url: str) -> None:
    """What a web page could make a visitor's browser send, and the answers."""
    deploy = b"deployments: []\n"
    page = {"origin": "https://attacker.example", "content-type": "application/json"}
    answer = httpx.post(f"{url}/api/v1/deploy/diff", content=deploy, headers=page, trust_env=False)
    print(f"  POST with Origin: https://attacker.example -> {answer.status_code} {answer.json()['error']}")
    form = {"content-type": "text/plain"}
    answer2 = httpx.post(f"{url}/api/v1/models", content=b'{"name":"x"}', headers=form, trust_env=False)
    print(f"  POST as text/plain (a form's type)      -> {answer2.status_code}")
    if (answer.status_code, answer2.status_code) != (403, 415):
        raise SystemExit(f"a browser's request was not refused: {answer.status_code}, {answer2.status_code}")


def access_act(model_file: Path) -> None:
    """Tokens and roles on a `modelyard registry serve` control plane."""
    print("\n\n== act 5: access control: tokens with roles, and what a browser cannot do")
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    env = act_env(scratch / "home")
    server = None
    try:
        print(f"$ export MODELYARD_HOME={scratch / 'home'}    # a throw-away home, deleted at the end")
        built = modelyard("build", str(model_file), "-o", str(scratch / "dist"), env=env, cwd=scratch)
        package = built.stdout.split()[0]
        print("\n== the first admin token, made on this machine straight into the database")
        root = _token(
            modelyard("token", "create", "--name", "root", "--role", "admin", env=env, cwd=scratch).stdout
        )
        with (scratch / "control.log").open("w") as log:  # uvicorn's INFO lines, not for the reader
            server, url = launch(
                ["registry", "serve", "--port", "0"],
                "registry serve --port 0",
                "modelyard registry: serving on ",
                env=env,
                cwd=scratch,
                stderr=log,
            )
        remote = {**env, "MODELYARD_CONTROL_URL": url}
        print("\n== without a token: refused")
        modelyard("registry", "list", env=remote, cwd=scratch, expect=1)
        print("\n== the admin hands out a deployer token (CI) and a viewer token (a dashboard)")
        admin = _as(root, remote)
        ci = _token(
            modelyard("token", "create", "--name", "ci", "--role", "deployer", env=admin, cwd=scratch).stdout
        )
        board = _token(
            modelyard("token", "create", "--name", "board", "--role", "viewer", env=admin, cwd=scratch).stdout
        )
        print("\n== the viewer may look, not push")
        modelyard("registry", "list", env=_as(board, remote), cwd=scratch)
        modelyard(
            "registry", "push", package, "--name", "tiny", env=_as(board, remote), cwd=scratch, expect=1
        )
        print("\n== CI pushes and moves production; the history names the token, not the --user claimed")
        modelyard(
            "registry",
            "push",
            package,
            "--name",
            "tiny",
            "--user",
            "mallory",
            env=_as(ci, remote),
            cwd=scratch,
        )
        modelyard(
            "registry",
            "alias",
            "tiny",
            "production",
            "1",
            "--user",
            "mallory",
            env=_as(ci, remote),
            cwd=scratch,
        )
        history = modelyard("registry", "history", "tiny", env=_as(board, remote), cwd=scratch)
        if "mallory" in history.stdout or " ci " not in f" {history.stdout} ":
            raise SystemExit("the history should name the token 'ci', never the claimed user")
        print("\n== a web page cannot make a browser change anything (with access control off too)")
        _refused(url)
        print("\n== revoke CI's token: it stops working at once")
        modelyard("token", "revoke", "ci", env=admin, cwd=scratch)
        modelyard("registry", "list", env=_as(ci, remote), cwd=scratch, expect=1)
        modelyard("token", "list", "--all", env=admin, cwd=scratch)
        stop_server(server, "control plane")
        server = None
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"\n== removed {scratch}")
