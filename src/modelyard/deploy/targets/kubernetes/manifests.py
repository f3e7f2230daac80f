"""The Kubernetes backend's manifests: a deploy file rendered as Deployments, Services,
HorizontalPodAutoscalers and ConfigMaps (docs/deploy.md, "Kubernetes").

Per project / model / version:

- a **Deployment** (apps/v1) running ``modelyard serve <uri>`` on port 8080 in the version's image,
  its probes on the server's ``/health/{startup,ready,live}``, requests and limits from the spec,
  Prometheus scrape annotations, and a rolling update that never drops below the desired replicas;
- a **Service** (ClusterIP, port 80 -> 8080) selecting exactly that version's pods;
- a **HorizontalPodAutoscaler** (autoscaling/v2) when the version is autoscaled; the Deployment then
  has no ``replicas`` field, so re-applying the manifests never fights the autoscaler;
- a **NetworkPolicy** (networking.k8s.io/v1) that lets only the gateway's and the control plane's
  pods (``PEER_LABELS``, same namespace) reach that version's pods, on the serving port only.

Per project / model, a **ConfigMap** whose ``routes.json`` is the gateway's route for it (the shape of
``routing.table.route_to_dict``: versions with weight, mirror fraction and the version's Service as
the one replica), which a gateway in the cluster reads with ``modelyard gateway serve --routes``
(``routing/route_file.py``) from the ConfigMaps mounted as files.

Everything here renders plain data: no cluster, no client, and neither the gateway nor the model
server is imported. ``to_yaml`` writes what ``modelyard deploy render`` prints for GitOps tools.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import yaml

from modelyard.deploy.backend import VersionKey
from modelyard.deploy.spec import DeployFile, Deployment, Probe, Resources, VersionSpec
from modelyard.errors import InvalidInput

__all__ = [
    "GPU_RESOURCE",
    "PEER_LABELS",
    "PORT",
    "SERVICE_PORT",
    "check_namespace",
    "no_replica_gate",
    "object_name",
    "render",
    "render_version",
    "service_url",
    "to_yaml",
]

PORT = 8080  # the model server's port in the image (package/docker.py PORT; tests check they agree)
SERVICE_PORT = 80
GPU_RESOURCE = "nvidia.com/gpu"
# The non-root user `modelyard dockerfile` images run as (package/docker.py: useradd --uid 10001).
_IMAGE_UID = 10001
# SIGTERM handling: the pod is removed from its Service's endpoints when deletion starts; the preStop
# pause lets kube-proxy and the gateway's resolvers catch up before the server stops accepting, then
# the server waits up to drain_timeout_s (30 s by default, server/settings.py) for in-flight requests.
_PRESTOP_S = 5
_DRAIN_TIMEOUT_S = 30
_GRACE_MARGIN_S = 5
# A route's options as the gateway defaults them (routing/table.py ModelRoute), restated here.
_ROUTE_OPTIONS: dict[str, Any] = {"timeout_s": 30.0, "log_payload": "hash", "log_sample": 1.0}
_SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}
# The pods a model server lets in (its NetworkPolicy): the gateway, which sends it traffic, and the
# control plane. Label your gateway's and control plane's pods with these (docs/deploy.md).
PEER_LABELS: tuple[dict[str, str], ...] = (
    {"app.kubernetes.io/name": "modelyard-gateway"},
    {"app.kubernetes.io/name": "modelyard-control-plane"},
)

_MAX_NAME = 63
_HASH_LEN = 8
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # Service names must also start with a letter
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # namespaces
_PLAIN = re.compile(r"[a-z0-9]+")  # a name part that cannot be confused when joined with "-"
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


@dataclasses.dataclass(frozen=True)
class _Version:
    """One version to render, with everything its objects need."""

    project: str
    model: str
    version: str
    spec: VersionSpec
    namespace: str
    image: str

    @property
    def name(self) -> str:
        return object_name(self.project, self.model, self.version)


def _digest(words: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(words).encode()).hexdigest()[:_HASH_LEN]


def _shorten(words: list[str], budget: int) -> str:
    """``words`` joined with "-" in at most ``budget`` characters, cutting the longest word first so
    every part stays recognisable."""
    words = list(words)
    while len("-".join(words)) > budget:
        longest = max(range(len(words)), key=lambda i: len(words[i]))
        words[longest] = words[longest][:-1].rstrip("-")
    return "-".join(word for word in words if word)


def object_name(*parts: str, suffix: str = "") -> str:
    """A deterministic DNS label (RFC 1035: lower-case, starts with a letter, <= 63 characters).

    ``object_name("mail", "spam", "v1")`` is ``mail-spam-v1``. When the parts are not plain
    lower-case letters and digits (``Spam_Filter``, ``v1.2``, ``spam-detector``: "-" in a part would
    let ``(a-b, c)`` and ``(a, b-c)`` meet), when the result would start with a digit, or when it is
    too long, the sanitised name (longest parts cut first) gets ``-`` and 8 hex digits of a hash of the
    exact parts.
    """
    words = [*parts, suffix] if suffix else list(parts)
    readable = "-".join(words)
    if (
        len(readable) <= _MAX_NAME
        and _DNS_1035.fullmatch(readable)
        and all(_PLAIN.fullmatch(part) for part in parts)
    ):
        return readable
    clean = [re.sub(r"[^a-z0-9]+", "-", word.lower()).strip("-") for word in words]
    if not clean[0][:1].isalpha():
        clean[0] = f"m-{clean[0]}".rstrip("-")
    head = _shorten(clean, _MAX_NAME - _HASH_LEN - 1)
    return f"{head}-{_digest(words)}"


def service_url(project: str, model: str, version: str, namespace: str = "default") -> str:
    """The in-cluster URL of a version's Service: what the gateway's route lists as its replica."""
    name = object_name(project, model, version)
    return f"http://{name}.{namespace}.svc.cluster.local:{SERVICE_PORT}"


def _label_value(value: str) -> str:
    """``value`` when it is a valid label value, else a sanitised form with a hash of it."""
    if len(value) <= _MAX_NAME and _LABEL_VALUE.fullmatch(value):
        return value
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")
    head = clean[: _MAX_NAME - _HASH_LEN - 1].rstrip("-_.")
    return f"{head}-{_digest([value])}" if head else _digest([value])


def _selector(v: _Version) -> dict[str, str]:
    """The labels that pick out exactly this version's pods (Deployment and Service selectors)."""
    return {
        "app.kubernetes.io/name": "modelyard-server",
        "app.kubernetes.io/instance": v.name,
        "app.kubernetes.io/part-of": "modelyard",
        "modelyard.io/project": _label_value(v.project),
        "modelyard.io/model": _label_value(v.model),
        "modelyard.io/version": _label_value(v.version),
    }


def _labels(v: _Version) -> dict[str, str]:
    return {**_selector(v), "app.kubernetes.io/component": "model-server"}


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _seconds(value: float, minimum: int = 1) -> int:
    """Kubernetes probe timings are whole seconds: round up, never below ``minimum``."""
    return max(minimum, math.ceil(value))


def _quantity(value: str | float) -> str:
    """A CPU amount as a Kubernetes quantity string: 1 -> "1", 0.5 -> "0.5", "500m" unchanged."""
    if isinstance(value, str):
        return value
    return format(Decimal(repr(float(value))).normalize(), "f")


def _args(v: _Version) -> list[str]:
    """``modelyard serve``'s arguments. ``--name`` makes the served model's name the routed model's,
    so the gateway's upstream path (``/v2/models/{model}/infer``) matches whatever the uri is.
    ``--device cuda`` with ``resources.gpu``: the device plugin shows the pod its own GPUs only."""
    spec = v.spec
    args = [spec.uri, "--name", v.model, "--host", "0.0.0.0", "--port", str(PORT)]
    flags: list[tuple[str, int | float | str | None]] = [
        ("--max-batch-size", spec.batching.max_batch_size),
        ("--max-latency-ms", spec.batching.max_latency_ms),
        ("--intra-op-threads", spec.server.intra_op_threads),
        ("--max-queue", spec.server.max_queue),
        ("--device", "cuda" if spec.resources.gpu else None),  # CPU pods: the default, unchanged
    ]
    for flag, value in flags:
        if value is not None:
            args += [flag, format(value, "g") if isinstance(value, float) else str(value)]
    return args


def _resources(resources: Resources) -> dict[str, Any]:
    """Requests and limits alike for cpu and memory (a guaranteed share); GPUs as a limit, which
    Kubernetes also takes as the request for extended resources."""
    amounts: dict[str, str] = {}
    if resources.cpu is not None:
        amounts["cpu"] = _quantity(resources.cpu)
    if resources.memory is not None:
        amounts["memory"] = resources.memory
    limits = dict(amounts)
    if resources.gpu:
        limits[GPU_RESOURCE] = str(resources.gpu)
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _probe(path: str, probe: Probe) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT, "scheme": "HTTP"},
        "initialDelaySeconds": _seconds(probe.initial_delay_s, minimum=0),
        "periodSeconds": _seconds(probe.period_s),
        "timeoutSeconds": _seconds(probe.timeout_s),
        "failureThreshold": probe.failure_threshold,
    }


def _container(v: _Version) -> dict[str, Any]:
    probes = v.spec.probes
    container: dict[str, Any] = {
        "name": "model-server",
        "image": v.image,
        # command, not only args: an image from `modelyard dockerfile` has `modelyard serve <pkg>` as
        # its ENTRYPOINT, and args alone would be appended to it.
        "command": ["modelyard", "serve"],
        "args": _args(v),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
    }
    env = v.spec.server.env
    if env:
        container["env"] = [{"name": key, "value": env[key]} for key in sorted(env)]
    resources = _resources(v.spec.resources)
    if resources:
        container["resources"] = resources
    container |= {
        "startupProbe": _probe("/health/startup", probes.startup),
        "readinessProbe": _probe("/health/ready", probes.readiness),
        "livenessProbe": _probe("/health/live", probes.liveness),
        # The image is Python's, so Python sleeps: no shell or coreutils assumed.
        "lifecycle": {
            "preStop": {"exec": {"command": ["python", "-c", f"import time; time.sleep({_PRESTOP_S})"]}}
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return container


def _pod_spec(v: _Version) -> dict[str, Any]:
    """Runs under the "restricted" Pod Security Standard: non-root, no privilege escalation,
    no capabilities, the runtime's default seccomp profile."""
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the server never talks to the API server
        "enableServiceLinks": False,  # no *_SERVICE_HOST/*_PORT variables in the server's environment
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _IMAGE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": _PRESTOP_S + _DRAIN_TIMEOUT_S + _GRACE_MARGIN_S,
        "containers": [_container(v)],
    }
    if v.spec.resources.gpu:  # GPU nodes are commonly tainted with the resource's name
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return pod


def _deployment(v: _Version) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if v.spec.autoscaling is None:
        spec["replicas"] = v.spec.min_replicas
    spec |= {
        "selector": {"matchLabels": _selector(v)},
        # Never below the desired replicas: a new pod takes traffic only once ready, then an old one goes.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": _labels(v), "annotations": dict(_SCRAPE)},
            "spec": _pod_spec(v),
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(v.name, v.namespace, _labels(v)),
        "spec": spec,
    }


def _service(v: _Version) -> dict[str, Any]:
    port = {"name": "http", "port": SERVICE_PORT, "targetPort": PORT, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(v.name, v.namespace, _labels(v)),
        "spec": {"type": "ClusterIP", "selector": _selector(v), "ports": [port]},
    }


def _autoscaler(v: _Version) -> dict[str, Any] | None:
    scaling = v.spec.autoscaling
    if scaling is None:
        return None
    target = {"type": "Utilization", "averageUtilization": scaling.target_cpu_percent}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(v.name, v.namespace, _labels(v)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": v.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def _network_policy(v: _Version) -> dict[str, Any]:
    """Ingress to the version's pods only from the gateway and the control plane, only on the
    serving port. The server binds 0.0.0.0 in its pod and model control is off; this keeps every
    other pod of the cluster from its inference and admin endpoints as well. The kubelet's probes
    need no rule: traffic from the pod's own node is always allowed."""
    peers = [{"podSelector": {"matchLabels": dict(labels)}} for labels in PEER_LABELS]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(v.name, v.namespace, _labels(v)),
        "spec": {
            "podSelector": {"matchLabels": _selector(v)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }


def _route(deployment: Deployment, namespace: str) -> dict[str, Any]:
    """The gateway's route for one project/model, as ``routing.table.route_to_dict`` writes it."""
    versions = []
    for item in deployment.versions:
        fraction = item.spec.mirror_fraction
        url = service_url(deployment.project, deployment.model, item.version, namespace)
        versions.append(
            {
                "version": item.version,
                "weight": item.spec.weight,
                "mirror": fraction is not None,
                "mirror_fraction": 1.0 if fraction is None else fraction,
                "target": deployment.model,
                "replicas": [url],
            }
        )
    return {"project": deployment.project, "model": deployment.model, **_ROUTE_OPTIONS, "versions": versions}


def _routes_config_map(deployment: Deployment, namespace: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "modelyard-gateway",
        "app.kubernetes.io/component": "routes",
        "app.kubernetes.io/part-of": "modelyard",
        "modelyard.io/project": _label_value(deployment.project),
        "modelyard.io/model": _label_value(deployment.model),
    }
    name = object_name(deployment.project, deployment.model, suffix="routes")
    text = json.dumps(_route(deployment, namespace), indent=2) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(name, namespace, labels),
        "data": {"routes.json": text},
    }


def _image(spec: VersionSpec, field: str, image_for: Callable[[VersionSpec], str] | None) -> str:
    image = image_for(spec) if image_for is not None else spec.image
    if not image or not image.strip():
        raise InvalidInput(
            f"{field}: no image to run {spec.uri!r} in; build one with `modelyard dockerfile` "
            "(then docker build and push it) and name it here",
            field=field,
        )
    return image


def _check(spec: VersionSpec, field: str) -> None:
    """What the schema allows but Kubernetes would reject or run uselessly."""
    for key in spec.server.env:
        if not _ENV_NAME.fullmatch(key):
            raise InvalidInput(
                f"{field}.server.env: {key!r} is not a valid environment variable name for Kubernetes "
                "(letters, digits, '_', '-', '.'; not starting with a digit)",
                field=f"{field}.server.env.{key}",
            )
    if spec.autoscaling is not None and spec.resources.cpu is None:
        raise InvalidInput(
            f"{field}.resources.cpu: autoscaling on CPU utilisation needs a cpu request "
            "(the HorizontalPodAutoscaler cannot compute utilisation without one)",
            field=f"{field}.resources.cpu",
        )


def _versions(
    deployment: Deployment,
    index: int,
    namespace: str,
    image_for: Callable[[VersionSpec], str] | None,
) -> list[_Version]:
    found = []
    for j, item in enumerate(deployment.versions):
        field = f"deployments[{index}].versions[{j}].spec"
        _check(item.spec, field)
        if item.spec.replica_gate is not None:  # never silently dropped from what GitOps applies
            key = (deployment.project, deployment.model, item.version)
            raise InvalidInput(no_replica_gate(key), field=f"{field}.replica_gate")
        image = _image(item.spec, f"{field}.image", image_for)
        found.append(
            _Version(deployment.project, deployment.model, item.version, item.spec, namespace, image)
        )
    return found


def no_replica_gate(key: VersionKey) -> str:
    """Why ``versions.<v>.spec.replica_gate`` cannot run on this target, and what to use instead."""
    project, model, version = key
    return (
        f"versions.{version}.spec.replica_gate of {project}/{model}: the Kubernetes target cannot gate"
        " an update replica by replica (the gateway routes to the version's Service, not to its pods,"
        " so no pod's own answers can be read); remove replica_gate, or ship the new package as a new"
        f" version with a canary rollout from {version} (docs/rollout.md)"
    )


def check_namespace(namespace: str) -> None:
    """Raise InvalidInput (field ``namespace``) unless ``namespace`` is a valid namespace name."""
    if len(namespace) > _MAX_NAME or not _DNS_1123.fullmatch(namespace):
        raise InvalidInput(
            f"namespace {namespace!r} must be a DNS label: lower-case letters, digits and '-', "
            "at most 63 characters",
            field="namespace",
        )


def _version_objects(v: _Version) -> list[dict[str, Any]]:
    """A version's Deployment, Service, (when autoscaled) HorizontalPodAutoscaler and NetworkPolicy."""
    objects = [_deployment(v), _service(v)]
    autoscaler = _autoscaler(v)
    if autoscaler is not None:
        objects.append(autoscaler)
    objects.append(_network_policy(v))
    return objects


def render(
    file: DeployFile,
    *,
    namespace: str = "default",
    image_for: Callable[[VersionSpec], str] | None = None,
) -> list[dict[str, Any]]:
    """The Kubernetes objects for ``file``, in ``namespace``, in a deterministic order: per version its
    Deployment, Service, (when autoscaled) HorizontalPodAutoscaler and NetworkPolicy, then the
    model's routes ConfigMap. Each version's image is ``image_for(spec)`` when given, else
    ``spec.image``.

    Raises InvalidInput naming the field for a missing image, an environment variable name
    Kubernetes refuses, autoscaling without a cpu request, or an invalid namespace.
    """
    check_namespace(namespace)
    objects: list[dict[str, Any]] = []
    for index, deployment in enumerate(file.deployments):
        for v in _versions(deployment, index, namespace, image_for):
            objects += _version_objects(v)
        objects.append(_routes_config_map(deployment, namespace))
    return objects


def render_version(
    project: str,
    model: str,
    version: str,
    spec: VersionSpec,
    *,
    namespace: str = "default",
    image_for: Callable[[VersionSpec], str] | None = None,
) -> list[dict[str, Any]]:
    """One version's objects, exactly as ``render`` writes them: its Deployment, Service, (when
    autoscaled) HorizontalPodAutoscaler and NetworkPolicy. The model's routes ConfigMap is not
    among them: it needs every version of the model and their weights. Raises InvalidInput as
    ``render`` does, naming ``spec...`` fields."""
    check_namespace(namespace)
    _check(spec, "spec")
    image = _image(spec, "spec.image", image_for)
    return _version_objects(_Version(project, model, version, spec, namespace, image))


class _Dumper(yaml.SafeDumper):
    """Safe YAML; multi-line strings (the routes JSON) as literal blocks, readable in a diff."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """``objects`` as one multi-document YAML stream (``---`` before each), keys in the order
    ``render`` builds them (apiVersion, kind, metadata, spec, ...): the same deploy file always
    gives byte-identical text, so a GitOps diff shows only real changes."""
    return yaml.dump_all(
        [dict(item) for item in objects],
        Dumper=_Dumper,
        sort_keys=False,
        explicit_start=True,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
