"""``modelyard up``: the whole platform on one machine, the embedded default.

One process serves the control plane — the registry, the routing table and the deploy API, on the
SQLite database and artifact folder under ``$MODELYARD_HOME`` — and supervises the local deploy
backend's replicas (``modelyard serve`` processes); the gateway runs beside it as its own worker
processes (``modelyard gateway serve``) reading the same routing table. SIGTERM or Ctrl-C stops the
gateway, the replicas and the control plane, in that order.

``modelyard up --kubernetes`` runs the versions in a cluster instead
(``deploy/targets/kubernetes/target.py``): server-side applied Deployments, each version's Service
registered as its replica in the routing table. The gateway started here must then resolve the
Services' cluster DNS names, so run it in a pod of that cluster (see docs/deploy.md, "Kubernetes").
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard._process import PARENT_ENV, ChildFailed, announce, spawn_announced, terminate
from modelyard.control.app import build_control_app
from modelyard.control.server import check_exposure, uvicorn_config
from modelyard.control.settings import ControlSettings
from modelyard.deploy.policy import DeployPolicy
from modelyard.deploy.service import DeployService
from modelyard.deploy.state import DeployStore
from modelyard.gateway.settings import GatewaySettings
from modelyard.routing.store import RouteStore
from modelyard.web.listen import AnnouncingServer, bind_socket

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from modelyard.deploy.backend import DeployTarget

__all__ = ["TargetFactory", "kubernetes_target", "run_up"]

# Makes the deploy target the control plane drives, on the control plane's settings.
TargetFactory = Callable[[ControlSettings], "DeployTarget"]


def _start_gateway(gateway: GatewaySettings, control: ControlSettings) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "MODELYARD_HOME": str(control.home), PARENT_ENV: str(os.getpid())}
    if control.database_url:
        env["MODELYARD_REGISTRY_DB"] = control.database_url
    command = [sys.executable, "-m", "modelyard", "gateway", "serve", "--host", gateway.host,
               "--port", str(gateway.port), "--workers", str(gateway.workers)]  # fmt: skip
    if gateway.admin_port is not None:  # /metrics and /-/routing: only on the admin listener
        command += ["--admin-host", gateway.admin_host, "--admin-port", str(gateway.admin_port)]
    if gateway.tls_cert is not None and gateway.tls_key is not None:
        command += ["--tls-cert", str(gateway.tls_cert), "--tls-key", str(gateway.tls_key)]
    try:
        return spawn_announced(command, env=env, component="gateway")
    except ChildFailed as exc:
        raise SystemExit(f"modelyard up: the gateway did not start ({exc})") from None


def _local_target(control: ControlSettings) -> DeployTarget:
    from modelyard.deploy.targets.local import LocalTarget

    return LocalTarget(control)


def kubernetes_target(
    kubeconfig: str | None = None, namespace: str = "default", context: str | None = None
) -> TargetFactory:
    """A factory of ``KubernetesTarget``s that register Services in the control plane's routing
    table. Its cluster: ``kubeconfig`` when given; else the pod's own service account when this
    runs in a pod with no kubeconfig around; else ``$KUBECONFIG`` or ``~/.kube/config``."""

    def make(control: ControlSettings) -> DeployTarget:
        from modelyard.deploy.targets.kubernetes.target import KubernetesTarget
        from modelyard.routing.store import RouteStore

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
    control: ControlSettings,
    gateway: GatewaySettings,
    on_ready: Callable[[str, str], None] | None = None,
    *,
    target_factory: TargetFactory | None = None,
) -> None:
    """Serve the control plane here and the gateway beside it until a signal stops them. The deploy
    target is ``target_factory(control)`` (default: the local backend's ``LocalTarget``). Refused
    off loopback without an admin token (``control/server.py``, ``check_exposure``)."""
    check_exposure(control)
    sock = bind_socket(control.host, control.port)
    control_url = f"{control.scheme}://{control.host}:{sock.getsockname()[1]}"
    try:
        target = (target_factory or _local_target)(control)
    except BaseException:
        sock.close()
        raise
    app = build_control_app(control, target=target)
    gateway_proc: list[subprocess.Popen[str]] = []
    restore = target_factory is None  # the local replicas stopped with the last `up`: bring them back

    def started(url: str) -> None:
        proc, gateway_url = _start_gateway(gateway, control)
        gateway_proc.append(proc)
        (on_ready or _announce)(control_url, gateway_url)

    try:
        if restore:
            _restore(app.state.registry.engine, target, control)
        AnnouncingServer(uvicorn_config(app, control), started).run(sockets=[sock])
    finally:
        for proc in gateway_proc:
            terminate([proc], grace_s=30.0)
        target.close()
        sock.close()


def _restore(engine: Engine, target: DeployTarget, control: ControlSettings) -> None:
    """Start the last applied deploy file's replicas again, before the gateway starts (clients then
    meet no version without replicas) and the rollout controller reads evidence (a candidate is not
    judged on the errors of its absence)."""
    store = DeployStore(engine)
    service = DeployService(store, RouteStore(engine), target, policy=DeployPolicy.from_settings(control))
    service.restore(lambda line: print(f"modelyard up: {line}", file=sys.stderr, flush=True))


def _announce(control_url: str, gateway_url: str) -> None:
    announce(control_url, "control")
    announce(gateway_url, "gateway")
    # A hint for people, on stderr: `modelyard deploy` needs the URL (README.md, "Local or remote").
    print(
        f"modelyard up: for `modelyard deploy`: export MODELYARD_CONTROL_URL={control_url}", file=sys.stderr
    )
