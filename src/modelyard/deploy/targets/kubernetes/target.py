"""The Kubernetes deploy target: versions run as Deployments in a cluster, applied with server-side apply.

:class:`KubernetesTarget` implements ``DeployTarget`` (``deploy/backend.py``) with the official
``kubernetes`` client (the optional extra ``modelyard[k8s]``, imported only when a target is made):

- :meth:`~KubernetesTarget.ensure` renders the version's objects exactly as ``modelyard deploy
  render`` does (``manifests.py``: a Deployment, a Service, when autoscaled a
  HorizontalPodAutoscaler, and a NetworkPolicy) and **server-side applies** each: ``PATCH`` to
  the object's URL with ``Content-Type: application/apply-patch+yaml``,
  ``fieldManager=<field_manager>`` and ``force=true`` (this target owns the fields it applies;
  ``kubectl edit`` changes to them are overwritten). An autoscaler the spec no longer asks for is
  deleted. It then polls the Deployment
  until its rollout is complete, like ``kubectl rollout status``: the controller has seen the new
  generation, every replica is updated, ready and available and no old one is left. The rolling
  update itself is Kubernetes' own (``maxUnavailable: 0``, readiness probes): old pods serve until
  new ones are ready. When the rollout does not complete within ``timeout_s`` (or Kubernetes reports
  ``ProgressDeadlineExceeded``) ``ensure`` raises ModelNotReady naming the version and the
  Deployment's conditions, after undoing its change so the cluster matches what was last applied
  (as the local target stops the new replicas it started): a version that did not exist is deleted,
  an updated one is applied again with its previous spec (kept in the ``modelyard.io/spec``
  annotation), which makes Kubernetes scale its old ReplicaSet back.
- After a successful ``ensure`` the version's Service URL
  (``http://<name>.<namespace>.svc.cluster.local:80``) is made its one replica in the routing table
  (``routes.set_replicas``), so the gateway running in the cluster routes to it once ``apply`` gives
  it weight; the Service spreads connections over the ready pods. It is a static replica, not a
  heart-beating endpoint: routing does not depend on this process staying up. A model's first
  apply has no route yet when its versions come up (``apply`` creates it when it sets the weights),
  so then a background thread registers the Service as soon as the route lists the version.
- :meth:`~KubernetesTarget.remove` deletes the version's autoscaler, Deployment, Service and
  NetworkPolicy (a missing one is no error); the pods are drained by Kubernetes (preStop pause,
  then SIGTERM).
- :meth:`~KubernetesTarget.status` lists the Deployments labelled as modelyard model servers in the
  namespace: one row per Deployment (not per pod, which would need the ``pods`` permission too).

A spec's ``replica_gate`` is refused, not ignored: the gate compares one new replica's own answers
with its siblings', and here the gateway routes to the version's Service, so the inference log
names no pod. :meth:`~KubernetesTarget.refused_fields` lets ``DeployService`` refuse such a file
before anything of it is planned or applied (``diff``, ``apply``), and ``ensure`` refuses the spec
before it calls the API server. A new package goes out on evidence as a new version with a canary
``rollout`` instead (docs/rollout.md).

The model's routes ConfigMap that ``render`` writes for GitOps tools is **not** applied here: a target
sees one version at a time with its traffic fields cleared (``apply.runtime_spec``), so it cannot
write a model's whole route, and the routing table that ``apply`` writes is where the gateway reads
routes from in this mode.

Permissions the target needs in its namespace (RBAC verbs): ``get``, ``list``, ``patch`` and
``delete`` on ``deployments`` (apps), ``patch`` and ``delete`` on ``services`` and on
``horizontalpodautoscalers`` (autoscaling). Server-side apply of an object that does not exist yet
creates it through ``patch``; a server may also check ``create`` for that.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.deploy.backend import ReplicaStatus, VersionKey
from modelyard.deploy.spec import DeployFile, VersionSpec
from modelyard.deploy.targets.kubernetes.manifests import (
    check_namespace,
    no_replica_gate,
    object_name,
    render_version,
    service_url,
)
from modelyard.errors import InvalidInput, ModelNotReady, ModelyardError, NotFound

if TYPE_CHECKING:
    from modelyard.routing.table import ModelRoute

__all__ = [
    "APPLY_PATCH",
    "KEY_ANNOTATION",
    "SPEC_ANNOTATION",
    "KubernetesTarget",
    "ReplicaRoutes",
    "no_replica_gate",
]

APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply's content type
SPEC_ANNOTATION = "modelyard.io/spec"  # the runtime spec last applied, as JSON (for an undo)
KEY_ANNOTATION = "modelyard.io/key"  # "project/model/version", exact (label values may be sanitised)
_MODEL_SERVERS = "app.kubernetes.io/part-of=modelyard,app.kubernetes.io/component=model-server"
# kind -> (the client's API class, the suffix of its patch_/read_/delete_/list_ methods)
_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "HorizontalPodAutoscaler": ("AutoscalingV2Api", "namespaced_horizontal_pod_autoscaler"),
    "NetworkPolicy": ("NetworkingV1Api", "namespaced_network_policy"),
}
# In deletion order: the NetworkPolicy last, after everything that makes pods or sends them traffic.
_VERSION_KINDS = ("HorizontalPodAutoscaler", "Deployment", "Service", "NetworkPolicy")


log = logging.getLogger("modelyard.deploy")


class ReplicaRoutes(Protocol):
    """What the target needs of the routing table (``RouteStore`` and ``RouteClient`` have it)."""

    def get(self, project: str, model: str) -> ModelRoute: ...

    def set_replicas(self, project: str, model: str, version: str, urls: Sequence[str]) -> object: ...


def _api_errors() -> tuple[type[Exception], ...]:
    """The exceptions a call to the API server raises: an HTTP error status, or no connection."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    return (ApiException, urllib3.exceptions.HTTPError)


def _describe(exc: Exception) -> str:
    """An API error in one line: ``403 Forbidden: deployments.apps "x" is forbidden: ...``."""
    status = getattr(exc, "status", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}"
    body = getattr(exc, "body", None)
    message = ""
    if body:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError, TypeError):
            message = str(body)[:300]
    reason = getattr(exc, "reason", "") or ""
    return f"{status} {reason}".strip() + (f": {message}" if message else "")


def _conditions(deployment: Mapping[str, Any]) -> str:
    """The Deployment's conditions: ``Available=False (MinimumReplicasUnavailable: ...)``."""
    found = (deployment.get("status") or {}).get("conditions") or []
    parts = []
    for item in found:
        why = ": ".join(str(item[k]) for k in ("reason", "message") if item.get(k))
        parts.append(f"{item.get('type')}={item.get('status')}" + (f" ({why})" if why else ""))
    return "; ".join(parts) or "no conditions reported yet"


def _rollout(deployment: Mapping[str, Any], minimum: int) -> tuple[bool, str]:
    """Whether the rollout is complete (``kubectl rollout status``'s checks, and at least ``minimum``
    ready replicas: an autoscaled Deployment starts at 1 before its autoscaler scales it up), and
    what it is waiting for."""
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    want = max(int(spec.get("replicas", 1) or 0), minimum)
    counts = {
        k: int(status.get(f"{k}Replicas") or 0) for k in ("updated", "ready", "available", "unavailable")
    }
    total = int(status.get("replicas") or 0)
    if meta.get("deletionTimestamp"):
        return False, "the Deployment is being deleted"
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False, f"waiting for the controller to see generation {meta.get('generation')}"
    if counts["updated"] < want:
        return False, f"{counts['updated']} of {want} replicas updated"
    if total > counts["updated"]:
        return False, f"{total - counts['updated']} old replicas still terminating"
    if min(counts["ready"], counts["available"]) < want or counts["unavailable"]:
        return False, f"{min(counts['ready'], counts['available'])} of {want} updated replicas ready"
    return True, f"{want} of {want} replicas ready"


def _deadline_exceeded(deployment: Mapping[str, Any]) -> bool:
    found = (deployment.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in found
    )


def _spec_of(deployment: Mapping[str, Any]) -> VersionSpec | None:
    """The spec a Deployment was last applied with by a target (None: not one of ours, or unreadable)."""
    text = ((deployment.get("metadata") or {}).get("annotations") or {}).get(SPEC_ANNOTATION)
    try:
        return VersionSpec.model_validate_json(text) if text else None
    except ValueError:
        return None


def _owns_replicas(deployment: Mapping[str, Any], manager: str) -> bool:
    """Whether ``manager``'s last apply set the Deployment's ``spec.replicas`` (its managedFields)."""
    for entry in (deployment.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            return "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    return False


def _key_of(deployment: Mapping[str, Any]) -> VersionKey | None:
    """A Deployment's (project, model, version): exact from its annotation, else from its labels."""
    meta = deployment.get("metadata") or {}
    parts = str((meta.get("annotations") or {}).get(KEY_ANNOTATION, "")).split("/")
    if len(parts) != 3 or not all(parts):
        labels = meta.get("labels") or {}
        parts = [str(labels.get(f"modelyard.io/{part}") or "") for part in ("project", "model", "version")]
    return (parts[0], parts[1], parts[2]) if all(parts) else None


class KubernetesTarget:
    """Runs versions as Deployments in one namespace of a cluster; see the module.

    ``api_client``: a ``kubernetes.client.ApiClient`` (default: from the kubeconfig, see
    :meth:`from_kubeconfig`); ``image_for``: the image of a version (default: its spec's ``image``);
    ``routes``: where each ready version's Service URL is registered as its replica (None: nowhere),
    closed with the target when ``close_routes``; ``poll_s``: how often a rollout is checked;
    ``request_timeout_s``: per API request.
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        image_for: Callable[[VersionSpec], str] | None = None,
        api_client: Any = None,
        field_manager: str = "modelyard",
        poll_s: float = 2.0,
        routes: ReplicaRoutes | None = None,
        close_routes: bool = False,
        request_timeout_s: float = 30.0,
    ) -> None:
        check_namespace(namespace)
        self.namespace = namespace
        self.image_for = image_for
        self.field_manager = field_manager
        self.poll_s = poll_s
        self.routes = routes
        self.close_routes = close_routes
        self.request_timeout_s = request_timeout_s
        self.api_client = api_client if api_client is not None else _kubeconfig_client(None, None)
        self._apis: dict[str, Any] = {}
        self._closed = False
        self._pending: dict[VersionKey, str] = {}  # Service URLs waiting for their model's route
        self._lock = threading.Lock()  # guards _pending and _registrar
        self._stop = threading.Event()
        self._registrar: threading.Thread | None = None

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str] | None = None, context: str | None = None, **kw: Any
    ) -> KubernetesTarget:
        """A target on the cluster of a kubeconfig: ``path`` (default ``$KUBECONFIG``, else
        ``~/.kube/config``) and ``context`` (default: its current context). Raises InvalidInput
        (field ``kubeconfig``) when there is no usable kubeconfig."""
        check_namespace(kw.get("namespace", "default"))
        return cls(api_client=_kubeconfig_client(path, context), **kw)

    @classmethod
    def in_cluster(cls, **kw: Any) -> KubernetesTarget:
        """A target for a process running in a pod: the pod's service account and the cluster's API."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        check_namespace(kw.get("namespace", "default"))
        configuration = client.Configuration()
        load: Any = config.load_incluster_config  # untyped in the client
        try:
            load(client_configuration=configuration)
        except ConfigException as exc:
            raise InvalidInput(
                f"kubeconfig: not running in a Kubernetes pod ({exc})", field="kubeconfig"
            ) from None
        return cls(api_client=client.ApiClient(configuration), **kw)

    # -- DeployTarget ------------------------------------------------------------------------------

    def ensure(self, key: VersionKey, spec: VersionSpec, *, timeout_s: float = 300.0) -> None:
        """Server-side apply the version's objects and return once its rollout is complete."""
        if spec.replica_gate is not None:  # refused before anything is applied (see the module)
            raise InvalidInput(no_replica_gate(key), field=f"versions.{key[2]}.spec.replica_gate")
        objects = self.manifests(key, spec)  # an invalid spec raises before anything is applied
        name = object_name(*key)
        deadline = time.monotonic() + timeout_s
        try:
            before = self._read(name)
        except _api_errors() as exc:
            raise ModelNotReady("/".join(key), f"reading Deployment {name}: {_describe(exc)}") from None
        failures: tuple[type[Exception], ...] = (ModelNotReady, *_api_errors())
        try:
            self._sync(objects)
            self._await_rollout(key, name, spec.min_replicas, deadline, timeout_s)
        except failures as exc:
            why = exc.state if isinstance(exc, ModelNotReady) else f"applying {name}: {_describe(exc)}"
            raise ModelNotReady("/".join(key), f"{why}; {self._undo(key, before)}") from None
        self._register(key)

    def refused_fields(self, desired: DeployFile) -> list[tuple[tuple[str | int, ...], str]]:
        """Every ``replica_gate`` in ``desired``: what this target cannot carry out (``LimitedTarget``)."""
        return [
            (
                ("deployments", d, "versions", v, "spec", "replica_gate"),
                no_replica_gate((*deployment.key, version.version)),
            )
            for d, deployment in enumerate(desired.deployments)
            for v, version in enumerate(deployment.versions)
            if version.spec.replica_gate is not None
        ]

    def remove(self, key: VersionKey) -> None:
        """Delete the version's autoscaler, Deployment and Service (those missing are skipped)."""
        name = object_name(*key)
        with self._lock:
            self._pending.pop(key, None)
        for kind in _VERSION_KINDS:
            try:
                self._delete(kind, name)
            except _api_errors() as exc:
                raise ModelyardError(f"deleting {kind} {name}: {_describe(exc)}") from None

    def status(self) -> list[ReplicaStatus]:
        """One row per model-server Deployment in the namespace (``replica`` is ``deployment/<name>``)."""
        try:
            found = self._call(
                "AppsV1Api", "list_namespaced_deployment", self.namespace, label_selector=_MODEL_SERVERS
            )
        except _api_errors() as exc:
            raise ModelyardError(f"listing Deployments in {self.namespace}: {_describe(exc)}") from None
        rows = [self._row(item) for item in found.get("items") or [] if isinstance(item, dict)]
        return sorted((row for row in rows if row is not None), key=lambda r: (r.project, r.model, r.version))

    def close(self) -> None:
        """Close the API client's connections, and ``routes`` when ``close_routes`` (the cluster's
        objects stay as they are)."""
        if not self._closed:
            self._closed = True
            self._stop.set()
            if self._registrar is not None:
                self._registrar.join(30)
            self.api_client.close()
            closer = getattr(self.routes, "close", None)
            if self.close_routes and callable(closer):
                closer()

    def __enter__(self) -> KubernetesTarget:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- the routing table -------------------------------------------------------------------------

    def _register(self, key: VersionKey) -> None:
        """Make the version's Service its one replica in the routing table. A model's first apply
        creates its route only after its versions are up (``apply_file`` sets the weights last), so
        then the registration waits: a thread retries it every ``poll_s`` and registers the Service
        once the route lists the version. For that brand-new model only, the gateway finds its route
        without a replica (and answers 503) for up to ``poll_s`` after ``apply`` routed it."""
        if self.routes is None:
            return
        url = service_url(*key, self.namespace)
        try:
            self.routes.set_replicas(*key, [url])
        except NotFound:
            with self._lock:
                self._pending[key] = url
                if self._registrar is None:
                    self._registrar = threading.Thread(target=self._registering, daemon=True)
                    self._registrar.start()
            return
        with self._lock:
            self._pending.pop(key, None)

    def _registering(self) -> None:
        assert self.routes is not None
        while not self._stop.wait(self.poll_s):
            with self._lock:
                pending = list(self._pending.items())
            for key, url in pending:
                try:
                    if self.routes.get(key[0], key[1]).version(key[2]) is None:
                        continue  # not routed (yet): never add a version apply did not route
                    self.routes.set_replicas(*key, [url])
                except NotFound:
                    continue
                except Exception as exc:  # the control plane's database is down: try again later
                    log.warning("registering %s as the replica of %s failed: %s", url, "/".join(key), exc)
                    continue
                with self._lock:
                    if self._pending.get(key) == url:
                        del self._pending[key]

    # -- the objects -------------------------------------------------------------------------------

    def manifests(self, key: VersionKey, spec: VersionSpec) -> list[dict[str, Any]]:
        """What ``ensure`` applies: ``render_version``'s objects, the Deployment annotated with the
        exact names and the spec (so a failed update can be undone)."""
        objects = render_version(*key, spec, namespace=self.namespace, image_for=self.image_for)
        for item in objects:
            if item["kind"] == "Deployment":
                item["metadata"]["annotations"] = {
                    KEY_ANNOTATION: "/".join(key),
                    SPEC_ANNOTATION: spec.model_dump_json(exclude_defaults=True),
                }
        return objects

    def _sync(self, objects: list[dict[str, Any]]) -> None:
        """Apply ``objects`` (one version's) and delete the kinds of the version they lack."""
        for item in objects:
            if item["kind"] == "Deployment" and "replicas" not in item["spec"]:
                self._hand_over_replicas(item["metadata"]["name"])
            self._apply(item)
        kinds = {item["kind"] for item in objects}
        name = objects[0]["metadata"]["name"]
        for kind in _VERSION_KINDS:
            if kind not in kinds:
                self._delete(kind, name)

    def _hand_over_replicas(self, name: str) -> None:
        """Before a Deployment is applied without ``replicas`` (it is autoscaled now) while this field
        manager owns that field, a second manager applies it at its current value: dropping a field
        from an apply deletes it when no other manager owns it, and the Deployment would fall back to
        1 replica until its autoscaler scales it up again ("Transferring ownership" in the
        server-side apply documentation)."""
        live = self._read(name)
        replicas = ((live or {}).get("spec") or {}).get("replicas")
        if live is None or replicas is None or not _owns_replicas(live, self.field_manager):
            return
        patch = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"replicas": replicas},
        }
        self._apply(patch, manager=f"{self.field_manager}-handover")

    def _apply(self, item: Mapping[str, Any], *, manager: str | None = None) -> None:
        """Server-side apply: PATCH, content type apply-patch+yaml, our field manager, force."""
        api_name, suffix = _KINDS[item["kind"]]
        self._call(
            api_name,
            f"patch_{suffix}",
            item["metadata"]["name"],
            self.namespace,
            dict(item),
            field_manager=manager or self.field_manager,
            force=True,
            _content_type=APPLY_PATCH,
        )

    def _delete(self, kind: str, name: str) -> bool:
        """Delete one object; False when it was not there."""
        from kubernetes.client.exceptions import ApiException

        api_name, suffix = _KINDS[kind]
        try:
            self._call(api_name, f"delete_{suffix}", name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _read(self, name: str) -> dict[str, Any] | None:
        """The Deployment as the server sent it (JSON, camelCase keys), None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("AppsV1Api", "read_namespaced_deployment", name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _call(self, api_name: str, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One API call through the client's typed API (its host, auth and TLS), the answer as plain
        JSON: not deserialised into the client's models, whose checks differ between its versions."""
        call = getattr(self._api(api_name), method)
        response = call(*args, _preload_content=False, _request_timeout=self.request_timeout_s, **kwargs)
        try:
            data = response.data
        finally:
            response.release_conn()
        try:
            found = json.loads(data) if data else {}
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def _api(self, name: str) -> Any:
        if name not in self._apis:
            from kubernetes import client

            self._apis[name] = getattr(client, name)(self.api_client)
        return self._apis[name]

    # -- rollouts and undo -------------------------------------------------------------------------

    def _await_rollout(
        self, key: VersionKey, name: str, minimum: int, deadline: float, timeout_s: float
    ) -> None:
        """Poll the Deployment every ``poll_s`` until its rollout is complete, else ModelNotReady."""
        while True:
            deployment = self._read(name) or {}
            done, progress = _rollout(deployment, minimum)
            if done:
                return
            if _deadline_exceeded(deployment):
                why = f"Deployment {name} exceeded its progress deadline"
            elif time.monotonic() >= deadline:
                why = f"Deployment {name} did not complete its rollout within {timeout_s:g} s"
            else:
                time.sleep(max(0.0, min(self.poll_s, deadline - time.monotonic())))
                continue
            raise ModelNotReady("/".join(key), f"{why} ({progress}); conditions: {_conditions(deployment)}")

    def _undo(self, key: VersionKey, before: Mapping[str, Any] | None) -> str:
        """Make the version what it was before the failed ``ensure`` (``before``: its Deployment
        then, None when there was none); says what was done."""
        failures: tuple[type[Exception], ...] = (ModelyardError, *_api_errors())
        previous = _spec_of(before) if before is not None else None
        try:
            if before is None:
                self.remove(key)
                return "the new version's objects were deleted"
            if previous is not None:
                self._sync(self.manifests(key, previous))
                return "the previous spec was applied again (its pods kept serving)"
        except failures as exc:
            detail = exc.message if isinstance(exc, ModelyardError) else _describe(exc)
            return f"undoing the change failed: {detail}"
        return "left as it is (its previous spec is unknown); its old pods keep serving"

    def _row(self, deployment: Mapping[str, Any]) -> ReplicaStatus | None:
        key = _key_of(deployment)
        if key is None:
            return None
        meta = deployment.get("metadata") or {}
        done, progress = _rollout(deployment, 0)
        state = "ready" if done else "starting"
        if meta.get("deletionTimestamp"):
            state = "stopping"
        elif _deadline_exceeded(deployment):
            state, progress = "failed", f"{progress}; {_conditions(deployment)}"
        name = str(meta.get("name", ""))
        url = service_url(*key, self.namespace) if object_name(*key) == name else None
        return ReplicaStatus(*key, replica=f"deployment/{name}", url=url, state=state, detail=progress)


def _kubeconfig_client(path: str | os.PathLike[str] | None, context: str | None) -> Any:
    """An ``ApiClient`` from a kubeconfig, or InvalidInput (field ``kubeconfig``) naming where it looked."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    where = os.fspath(path) if path is not None else os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        # persist_config=False: a refreshed token is never written back into the user's file.
        load: Any = config.new_client_from_config  # untyped in the client
        return load(config_file=os.path.expanduser(where), context=context, persist_config=False)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"kubeconfig: no usable kubeconfig at {where}"
            + (f", context {context!r}" if context else "")
            + f" ({exc}); give its path with --kubeconfig PATH or $KUBECONFIG",
            field="kubeconfig",
        ) from None
