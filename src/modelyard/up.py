"""``modelyard up``: the whole platform on one machine, the embedded default.

One process serves the control plane — the registry, the routing table and the deploy API, on the
SQLite database and artifact folder under ``$MODELYARD_HOME`` — and supervises the local deploy
backend's replicas (``modelyard serve`` processes); the gateway runs beside it as its own worker
processes (``modelyard gateway serve``) reading the same routing table. SIGTERM or Ctrl-C stops the
gateway, the replicas and the control plane, in that order.

``modelyard up --kubernetes`` runs the versions in a cluster instead (``deploy/k8s_target.py``):
server-side applied Deployments, each version's Service registered as its replica in the routing
table. The gateway started here must then resolve the Services' cluster DNS names, so run it in a
pod of that cluster (see docs/deploy.md, "Kubernetes").
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from modelyard.control import build_control_app
from modelyard.gateway.settings import GatewaySettings
from modelyard.lifeline import PARENT_ENV
from modelyard.protocols.listen import AnnouncingServer, bind_socket
from modelyard.registry.settings import RegistrySettings

if TYPE_CHECKING:
    from modelyard.deploy.backend import DeployTarget

__all__ = ["TargetFactory", "kubernetes_target", "run_up"]

# Makes the deploy target the control plane drives, on the control plane's settings.
TargetFactory = Callable[[RegistrySettings], "DeployTarget"]

_GATEWAY_LINE = re.compile(r"modelyard gateway: serving on (http://\S+)")


def _start_gateway(gateway: GatewaySettings, control: RegistrySettings) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "MODELYARD_HOME": str(control.home), PARENT_ENV: str(os.getpid())}
    if control.database_url:
        env["MODELYARD_REGISTRY_DB"] = control.database_url
    command = [sys.executable, "-m", "modelyard", "gateway", "serve", "--host", gateway.host,
               "--port", str(gateway.port), "--workers", str(gateway.workers)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = _GATEWAY_LINE.match(line.strip())
        if match:
            # Keep draining its stdout so a chatty gateway never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, match.group(1)
    raise SystemExit(f"modelyard up: the gateway did not start (exit code {proc.wait()})")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _local_target(control: RegistrySettings) -> DeployTarget:
    from modelyard.deploy.local import LocalTarget

    return LocalTarget(control)


def kubernetes_target(
    kubeconfig: str | None = None, namespace: str = "default", context: str | None = None
) -> TargetFactory:
    """A factory of ``KubernetesTarget``s that register Services in the control plane's routing
    table. Its cluster: ``kubeconfig`` when given; else the pod's own service account when this
    runs in a pod with no kubeconfig around; else ``$KUBECONFIG`` or ``~/.kube/config``."""

    def make(control: RegistrySettings) -> DeployTarget:
        from modelyard.deploy.k8s_target import KubernetesTarget
        from modelyard.gateway.store import RouteStore

        routes = RouteStore.open(control)
        options = {"namespace": namespace, "routes": routes, "close_routes": True}
        try:
            no_file = not os.environ.get("KUBECONFIG") and not (Path.home() / ".kube" / "config").exists()
            if kubeconfig is None and no_file and os.environ.get("KUBERNETES_SERVICE_HOST"):
                return KubernetesTarget.in_cluster(**options)
            return KubernetesTarget.from_kubeconfig(kubeconfig, context, **options)
        except BaseException:
            routes.close()
            raise

    return make


def run_up(
    control: RegistrySettings,
    gateway: GatewaySettings,
    on_ready: Callable[[str, str], None] | None = None,
    *,
    target_factory: TargetFactory | None = None,
) -> None:
    """Serve the control plane here and the gateway beside it until a signal stops them. The deploy
    target is ``target_factory(control)`` (default: the local backend's ``LocalTarget``)."""
    sock = bind_socket(control.host, control.port)
    control_url = f"http://{control.host}:{sock.getsockname()[1]}"
    try:
        target = (target_factory or _local_target)(control)
    except BaseException:
        sock.close()
        raise
    app = build_control_app(control, target=target)
    gateway_proc: list[subprocess.Popen[str]] = []

    def started(url: str) -> None:
        proc, gateway_url = _start_gateway(gateway, control)
        gateway_proc.append(proc)
        (on_ready or _announce)(control_url, gateway_url)

    config = uvicorn.Config(app, log_level=control.log_level, access_log=False, lifespan="on")
    try:
        AnnouncingServer(config, started).run(sockets=[sock])
    finally:
        for proc in gateway_proc:
            _stop(proc)
        target.close()
        sock.close()


def _announce(control_url: str, gateway_url: str) -> None:
    # Machine-readable lines on stdout, like every other modelyard server's.
    print(f"modelyard up: control plane on {control_url}", flush=True)
    print(f"modelyard up: gateway on {gateway_url}", flush=True)
    # A hint for people, on stderr: `modelyard deploy` needs the URL (README.md, "Local or remote").
    print(
        f"modelyard up: for `modelyard deploy`: export MODELYARD_CONTROL_URL={control_url}", file=sys.stderr
    )
