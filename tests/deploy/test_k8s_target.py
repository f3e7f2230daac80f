"""``KubernetesTarget`` (deploy/k8s_target.py) against a FAKE Kubernetes API server.

No Kubernetes cluster can run here, so these tests stand up a small fake API server instead: a real
HTTP server (Starlette + uvicorn on 127.0.0.1, port 0) that keeps applied objects in memory and
implements exactly the calls the target makes — server-side apply (PATCH, checking the content type,
``fieldManager`` and ``force``), GET and LIST (with a label selector) of Deployments, and DELETE —
and that plays a Deployment's rollout: "progressing" for a few polls after each change, then
complete (or stuck, or past its progress deadline, when a test says so). The official ``kubernetes``
client talks to it over HTTP, so the request shapes, the client's serialisation and the target's
handling of the answers are real; the fake's behaviour is not a cluster's (no admission, defaulting
beyond ``replicas``, scheduling, kubelet, probes, controllers or RBAC). Every body the target
applies is also validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelyard.control.settings import ControlSettings
from modelyard.control.up import kubernetes_target
from modelyard.deploy.apply import apply_file
from modelyard.deploy.file import DeployFileError
from modelyard.deploy.service import DeployService
from modelyard.deploy.spec import DeployFile, VersionSpec
from modelyard.deploy.state import DeployStore
from modelyard.deploy.targets.kubernetes.manifests import object_name, render, render_version, service_url
from modelyard.deploy.targets.kubernetes.target import (
    APPLY_PATCH,
    KEY_ANNOTATION,
    SPEC_ANNOTATION,
    KubernetesTarget,
)
from modelyard.errors import InvalidInput, ModelNotReady
from modelyard.routing.store import RouteStore
from tests.support import serve_in_thread

IMAGE = "registry.example.com/spam:1"
FIXED = VersionSpec.model_validate(
    {"uri": "spam@production", "replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}, "image": IMAGE}
)
AUTOSCALED = VersionSpec.model_validate(
    {
        "uri": "spam/7",
        "autoscaling": {"min_replicas": 2, "max_replicas": 5},
        "resources": {"cpu": "500m"},
        "image": IMAGE,
    }
)
KEY = ("mail", "spam", "v1")
NAME = object_name(*KEY)
# path prefix -> plural -> (apiVersion, kind): exactly the kinds the target uses
KINDS = {
    "api/v1": {"services": ("v1", "Service"), "configmaps": ("v1", "ConfigMap")},
    "apis/apps/v1": {"deployments": ("apps/v1", "Deployment")},
    "apis/autoscaling/v2": {"horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler")},
    "apis/networking.k8s.io/v1": {"networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy")},
}
PATH = re.compile(r"/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?")


# --- the fake API server -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    return JSONResponse({**body, "message": message, "reason": reason, "code": code}, status_code=code)


class FakeCluster:
    """Objects by (plural, namespace, name), every request, and a scripted rollout per Deployment."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.polls_until_ready = 2  # GETs of a changed Deployment that still show it progressing
        self.stuck: set[str] = set()  # Deployments whose new pods never become ready
        self.past_deadline: set[str] = set()  # ... and whose Progressing condition says so
        self.forbidden: set[tuple[str, str]] = set()  # (method, plural) answered 403
        self.pending: dict[str, int] = {}
        self.applied: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}  # by field manager
        self.scaled: dict[tuple[str, str, str], int] = {}  # replicas the autoscaler set
        self.replicas_seen: dict[str, list[int]] = {}  # a Deployment's replicas after each apply
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "PATCH", "DELETE"])])

    async def handle(self, request: Request) -> JSONResponse:
        raw = await request.body()
        call = Call(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            yaml.safe_load(raw) if raw else None,
        )
        with self.lock:
            self.calls.append(call)
            return self.answer(call)

    def answer(self, call: Call) -> JSONResponse:
        match = PATH.fullmatch(call.path)
        kinds = KINDS.get(match.group(1), {}) if match else {}
        if match is None or match.group(3) not in kinds:
            return status(404, "NotFound", f"the server could not find the requested resource {call.path}")
        _, namespace, plural, name = match.groups()
        if (call.method, plural) in self.forbidden:
            message = f'{plural} "{name}" is forbidden: User "ci" cannot {call.method.lower()} {plural}'
            return status(403, "Forbidden", message)
        if name is None:
            return self.list(plural, namespace, call.query.get("labelSelector", ""))
        key = (plural, namespace, name)
        if call.method == "PATCH":
            return self.apply(key, kinds[plural], call)
        if key not in self.objects:
            return status(404, "NotFound", f'{plural} "{name}" not found')
        if call.method == "DELETE":
            del self.objects[key]
            self.applied.pop(key, None)
            self.scaled.pop(key, None)
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        return JSONResponse(self.read(key))

    def apply(self, key: tuple[str, str, str], kind: tuple[str, str], call: Call) -> JSONResponse:
        """Server-side apply: the object is every field manager's last applied body merged."""
        if call.headers.get("content-type") != APPLY_PATCH:
            return status(
                415, "UnsupportedMediaType", f"not an apply patch: {call.headers.get('content-type')}"
            )
        manager, body = call.query.get("fieldManager"), call.body
        if not manager:
            return status(400, "BadRequest", "fieldManager is required for apply requests")
        meta = body.get("metadata", {})
        if (body.get("apiVersion"), body.get("kind")) != kind or meta.get("name") != key[2]:
            return status(400, "BadRequest", "the body does not match the URL")
        if meta.get("namespace", key[1]) != key[1]:
            return status(400, "BadRequest", "the namespace of the body does not match the URL")
        if key not in self.objects and set(body.get("spec", {})) == {"replicas"}:
            return status(422, "Invalid", "a partial apply cannot create a Deployment")
        applied = self.applied.setdefault(key, {})
        applied.pop(manager, None)
        applied[manager] = copy.deepcopy(body)
        old, stored = self.objects.get(key), self.merged(key, kind[1])
        generation = 1 if old is None else old["metadata"]["generation"]
        if old is not None and old.get("spec") != stored.get("spec"):
            generation += 1
        if kind[1] == "Deployment" and (old is None or generation != old["metadata"]["generation"]):
            self.pending[key[2]] = self.polls_until_ready
        stored["metadata"] |= {"namespace": key[1], "generation": generation, "uid": f"uid-{key[2]}"}
        stored["status"] = copy.deepcopy(old.get("status", {})) if old else {}
        self.objects[key] = stored
        if kind[1] == "Deployment":
            self.replicas_seen.setdefault(key[2], []).append(stored["spec"]["replicas"])
        return JSONResponse(stored, status_code=200 if old else 201)

    def merged(self, key: tuple[str, str, str], kind: str) -> dict[str, Any]:
        """The managers' bodies merged (mappings merge, anything else is the later one's), with
        managedFields naming each manager's spec fields; a Deployment's ``replicas`` nobody applies
        is the autoscaler's, else the API server's default of 1."""
        stored: dict[str, Any] = {}
        for body in self.applied[key].values():
            stored = deep_merge(stored, body)
        stored["metadata"]["managedFields"] = [
            {"manager": manager, "operation": "Apply", "apiVersion": body["apiVersion"],
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {f"f:{f}": {} for f in body.get("spec", {})}}}
            for manager, body in self.applied[key].items()
        ]  # fmt: skip
        if kind == "Deployment":
            if "replicas" in stored["spec"]:
                self.scaled.pop(key, None)
            stored["spec"].setdefault("replicas", self.scaled.get(key, 1))
        return stored

    def read(self, key: tuple[str, str, str]) -> dict[str, Any]:
        stored = self.objects[key]
        if key[0] == "deployments":
            stored["status"] = self.rollout(key, stored)
        return stored

    def rollout(self, key: tuple[str, str, str], deployment: dict[str, Any]) -> dict[str, Any]:
        """The status a Deployment shows on this poll: progressing, stuck or complete."""
        name, generation = key[2], deployment["metadata"]["generation"]
        autoscaler = self.objects.get(("horizontalpodautoscalers", key[1], name))
        if autoscaler is not None:  # the autoscaler has scaled it to its minimum (an update, not an apply)
            minimum = autoscaler["spec"]["minReplicas"]
            deployment["spec"]["replicas"] = max(deployment["spec"]["replicas"], minimum)
            self.scaled[key] = deployment["spec"]["replicas"]
        want = deployment["spec"]["replicas"]
        waiting = name in self.stuck or name in self.past_deadline or self.pending.get(name, 0) > 0
        if not waiting:
            return complete(generation, want, name)
        self.pending[name] = self.pending.get(name, 0) - 1
        return progressing(generation, want, name, past_deadline=name in self.past_deadline)

    def list(self, plural: str, namespace: str, selector: str) -> JSONResponse:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        items = [
            self.read(key)
            for key, item in sorted(self.objects.items())
            if key[:2] == (plural, namespace)
            and all(item["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        kind = "DeploymentList" if plural == "deployments" else "List"
        return JSONResponse({"apiVersion": "apps/v1", "kind": kind, "metadata": {}, "items": items})

    def patches(self) -> list[Call]:
        return [call for call in self.calls if call.method == "PATCH"]

    def has(self, plural: str, name: str = NAME, namespace: str = "default") -> bool:
        return (plural, namespace, name) in self.objects


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for field, value in update.items():
        old = merged.get(field)
        merged[field] = deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return copy.deepcopy(merged)


AVAILABLE = "Deployment has minimum availability."
UNAVAILABLE = "Deployment does not have minimum availability."


def condition(kind: str, state: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": state, "reason": reason, "message": message}


def complete(generation: int, want: int, name: str) -> dict[str, Any]:
    done = f'ReplicaSet "{name}-5f" has completed.'
    return {
        "observedGeneration": generation, "replicas": want, "updatedReplicas": want,
        "readyReplicas": want, "availableReplicas": want,
        "conditions": [
            condition("Available", "True", "MinimumReplicasAvailable", AVAILABLE),
            condition("Progressing", "True", "NewReplicaSetAvailable", done),
        ],
    }  # fmt: skip


def progressing(generation: int, want: int, name: str, *, past_deadline: bool) -> dict[str, Any]:
    """A rolling update half way: one new pod (not ready) beside the old ones (maxUnavailable 0)."""
    moving = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}-7c" is progressing.')
    if past_deadline:
        moving = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{name}-7c" has timed out progressing.')
    return {
        "observedGeneration": generation, "replicas": want + 1, "updatedReplicas": 1,
        "readyReplicas": want, "availableReplicas": want, "unavailableReplicas": 1,
        "conditions": [
            condition("Available", "False", "MinimumReplicasUnavailable", UNAVAILABLE),
            condition("Progressing", *moving),
        ],
    }  # fmt: skip


# --- fixtures ------------------------------------------------------------------------------------------


class RecordingRoutes:
    def __init__(self) -> None:
        self.replicas: list[tuple[str, str, str, list[str]]] = []

    def set_replicas(self, project: str, model: str, version: str, urls: list[str]) -> None:
        self.replicas.append((project, model, version, list(urls)))


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


@pytest.fixture
def cluster() -> Iterator[tuple[FakeCluster, str]]:
    fake = FakeCluster()
    with serve_in_thread(fake.app) as address:
        yield fake, f"http://{address}"


@pytest.fixture
def fake(cluster: tuple[FakeCluster, str]) -> Iterator[FakeCluster]:
    """The fake API server; afterwards, every whole object the test applied is checked against the
    Kubernetes schemas (the replicas handover is a partial apply by design)."""
    yield cluster[0]
    for call in cluster[0].patches():
        if call.query.get("fieldManager") == "modelyard":
            assert_valid(call.body)


@pytest.fixture
def routes() -> RecordingRoutes:
    return RecordingRoutes()


@pytest.fixture
def target(cluster: tuple[FakeCluster, str], routes: RecordingRoutes) -> Iterator[KubernetesTarget]:
    configuration = kubernetes.client.Configuration(host=cluster[1])
    configuration.proxy = None
    api_client = kubernetes.client.ApiClient(configuration)
    with KubernetesTarget(api_client=api_client, poll_s=0.02, routes=routes) as made:
        yield made


def assert_valid(body: dict[str, Any]) -> None:
    for version in ("1.30", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(body, version, strict=True)


def deployment_gets(fake: FakeCluster, after: int = 0) -> int:
    return sum(1 for c in fake.calls[after:] if c.method == "GET" and c.path.endswith(f"/deployments/{NAME}"))


# --- ensure ------------------------------------------------------------------------------------------


def test_ensure_server_side_applies_the_versions_objects(fake: FakeCluster, target: KubernetesTarget) -> None:
    target.ensure(KEY, FIXED, timeout_s=30)
    patches = fake.patches()
    assert [c.path for c in patches] == [
        f"/apis/apps/v1/namespaces/default/deployments/{NAME}",
        f"/api/v1/namespaces/default/services/{NAME}",
        f"/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/{NAME}",
    ]
    for call in patches:
        assert call.headers["content-type"] == "application/apply-patch+yaml"
        assert call.query["fieldManager"] == "modelyard"
        assert call.query["force"].lower() == "true"
    assert [c.body for c in patches] == target.manifests(KEY, FIXED)
    # The same objects `modelyard deploy render` writes, the Deployment annotated for status and undo.
    deployment, service, policy = (call.body for call in patches)
    annotations = deployment["metadata"].pop("annotations")
    assert [deployment, service, policy] == render_version(*KEY, FIXED)
    assert annotations[KEY_ANNOTATION] == "mail/spam/v1"
    assert VersionSpec.model_validate_json(annotations[SPEC_ANNOTATION]) == FIXED
    assert not fake.has("configmaps", object_name("mail", "spam", suffix="routes"))


def test_ensure_waits_for_the_rollout_then_registers_the_service(
    fake: FakeCluster, target: KubernetesTarget, routes: RecordingRoutes
) -> None:
    fake.polls_until_ready = 3
    target.ensure(KEY, FIXED, timeout_s=30)
    # one GET before applying (the previous spec: none), three progressing, one complete
    assert deployment_gets(fake) == 5
    assert fake.objects[("deployments", "default", NAME)]["status"]["updatedReplicas"] == 2
    assert routes.replicas == [(*KEY, ["http://mail-spam-v1.default.svc.cluster.local:80"])]
    assert routes.replicas[0][3] == [service_url(*KEY)]


def test_a_second_ensure_reapplies_and_returns_at_once(
    fake: FakeCluster, target: KubernetesTarget, routes: RecordingRoutes
) -> None:
    target.ensure(KEY, FIXED, timeout_s=30)
    generation = fake.objects[("deployments", "default", NAME)]["metadata"]["generation"]
    before = len(fake.calls)
    target.ensure(KEY, FIXED, timeout_s=30)
    assert len(fake.patches()) == 6  # server-side apply is idempotent: applying again is safe
    assert fake.objects[("deployments", "default", NAME)]["metadata"]["generation"] == generation
    assert deployment_gets(fake, before) == 2  # the previous spec, then one poll: complete
    assert len(routes.replicas) == 2


def test_an_autoscaled_version_gets_an_autoscaler_and_waits_for_its_minimum(
    fake: FakeCluster, target: KubernetesTarget
) -> None:
    fake.polls_until_ready = 0
    target.ensure(KEY, AUTOSCALED, timeout_s=30)
    paths = [c.path for c in fake.patches()]
    assert paths[-2] == f"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/{NAME}"
    deployment = fake.patches()[0].body
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert fake.objects[("deployments", "default", NAME)]["status"]["readyReplicas"] == 2
    # Back to fixed replicas: the autoscaler goes, or it would keep scaling the Deployment.
    target.ensure(KEY, FIXED, timeout_s=30)
    deletes = [c.path for c in fake.calls if c.method == "DELETE"]
    assert deletes == [f"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/{NAME}"]
    assert not fake.has("horizontalpodautoscalers")


def test_turning_on_autoscaling_hands_the_replicas_over_without_scaling_down(
    fake: FakeCluster, target: KubernetesTarget
) -> None:
    fake.polls_until_ready = 0
    target.ensure(KEY, FIXED.model_copy(update={"replicas": 3}), timeout_s=30)
    target.ensure(KEY, AUTOSCALED, timeout_s=30)
    deployments = [c for c in fake.patches() if c.path.endswith(f"/deployments/{NAME}")]
    assert [c.query["fieldManager"] for c in deployments] == ["modelyard", "modelyard-handover", "modelyard"]
    handover = deployments[1]
    assert handover.body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {"replicas": 3},
    }  # a partial apply: only the field handed over (so not a valid whole object for the schema)
    assert handover.query["force"].lower() == "true"
    # Dropping `replicas` from our apply alone would have reset it to 1 until the autoscaler acted.
    assert fake.replicas_seen[NAME] == [3, 3, 3]
    target.ensure(KEY, AUTOSCALED, timeout_s=30)  # no longer ours: nothing to hand over
    assert [c.query["fieldManager"] for c in fake.patches()].count("modelyard-handover") == 1


def test_a_rollout_that_never_completes_raises_and_deletes_a_new_version(
    fake: FakeCluster, target: KubernetesTarget, routes: RecordingRoutes
) -> None:
    fake.stuck.add(NAME)
    with pytest.raises(ModelNotReady) as raised:
        target.ensure(KEY, FIXED, timeout_s=0.3)
    message = raised.value.message
    assert "mail/spam/v1" in message
    assert f"Deployment {NAME} did not complete its rollout within 0.3 s" in message
    assert "(1 of 2 replicas updated)" in message
    assert (
        "Available=False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)"
        in message
    )
    assert "the new version's objects were deleted" in message
    assert not fake.has("deployments")
    assert not fake.has("services")
    assert routes.replicas == []


def test_a_failed_update_applies_the_previous_spec_again(fake: FakeCluster, target: KubernetesTarget) -> None:
    target.ensure(KEY, FIXED, timeout_s=30)
    fake.stuck.add(NAME)
    broken = FIXED.model_copy(update={"image": "registry.example.com/spam:broken"})
    with pytest.raises(ModelNotReady, match="the previous spec was applied again"):
        target.ensure(KEY, broken, timeout_s=0.3)
    deployments = [c.body for c in fake.patches() if c.path.endswith(f"/deployments/{NAME}")]
    images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in deployments]
    assert images == [IMAGE, "registry.example.com/spam:broken", IMAGE]
    assert fake.has("deployments")
    assert fake.has("services")


def test_a_progress_deadline_fails_before_the_timeout(fake: FakeCluster, target: KubernetesTarget) -> None:
    fake.past_deadline.add(NAME)
    with pytest.raises(ModelNotReady) as raised:
        target.ensure(KEY, FIXED, timeout_s=60)
    assert "exceeded its progress deadline" in raised.value.message
    assert (
        f'ProgressDeadlineExceeded: ReplicaSet "{NAME}-7c" has timed out progressing.' in raised.value.message
    )


def test_api_errors_name_the_object_and_the_servers_message(
    fake: FakeCluster, target: KubernetesTarget
) -> None:
    fake.forbidden.add(("PATCH", "services"))
    with pytest.raises(ModelNotReady) as raised:
        target.ensure(KEY, FIXED, timeout_s=30)
    assert f"applying {NAME}: 403 Forbidden" in raised.value.message
    assert 'services "mail-spam-v1" is forbidden' in raised.value.message
    assert not fake.has("deployments")  # the half-applied new version was deleted


def test_an_invalid_spec_is_refused_before_anything_is_applied(
    fake: FakeCluster, target: KubernetesTarget
) -> None:
    with pytest.raises(InvalidInput) as raised:
        target.ensure(KEY, FIXED.model_copy(update={"image": None}), timeout_s=30)
    assert raised.value.field == "spec.image"
    assert fake.calls == []


GATED_FILE = f"""deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {{uri: spam@production, replicas: 2, weight: 80, image: "{IMAGE}"}}
  - version: v2
    spec:
      uri: spam/7
      replicas: 2
      weight: 20
      image: "{IMAGE}"
      replica_gate: {{for: 30s}}
"""


def test_a_replica_gate_is_refused_before_anything_is_applied(
    fake: FakeCluster, target: KubernetesTarget
) -> None:
    # The gateway routes to the version's Service: no pod's own answers could be read.
    spec = VersionSpec.model_validate(
        {**FIXED.model_dump(exclude_defaults=True), "replica_gate": {"for": "30s"}}
    )
    with pytest.raises(InvalidInput) as raised:
        target.ensure(KEY, spec, timeout_s=30)
    assert raised.value.field == "versions.v1.spec.replica_gate"
    assert "cannot gate an update replica by replica" in raised.value.message
    assert "canary rollout" in raised.value.message
    assert fake.calls == []


def test_a_file_with_a_replica_gate_is_refused_by_diff_and_apply(
    fake: FakeCluster, target: KubernetesTarget, tmp_path: Path
) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    with DeployStore.open(settings) as store, RouteStore.open(settings) as routes:
        service = DeployService(store, routes, target)
        diff = functools.partial(service.diff, GATED_FILE, "deploy.yaml")
        for attempt in (diff, functools.partial(service.apply, GATED_FILE, source="deploy.yaml")):
            with pytest.raises(DeployFileError) as raised:
                attempt()
            assert raised.value.field == "deployments[0].versions[1].spec.replica_gate"
            [problem] = raised.value.errors
            assert problem.line == 13  # replica_gate's own line
            assert problem.message.startswith(
                "versions.v2.spec.replica_gate of mail/spam: the Kubernetes target"
            )
        assert store.history() == []  # refused before it was recorded, planned or started
        assert service.apply(GATED_FILE.replace("replica_gate: {for: 30s}", "")).result.ok
    assert fake.calls != []  # the same file without the gate did reach the cluster


def test_render_version_is_what_render_writes_for_the_version() -> None:
    file = DeployFile.model_validate(
        {"deployments": [{"project": "mail", "model": "spam", "versions": [
            {"version": "v1", "spec": {**AUTOSCALED.model_dump(exclude_defaults=True), "weight": 100}},
        ]}]}
    )  # fmt: skip
    expected = [item for item in render(file, namespace="models") if item["kind"] != "ConfigMap"]
    spec = file.deployments[0].versions[0].spec
    assert render_version(*KEY, spec, namespace="models") == expected


# --- remove, status, close ---------------------------------------------------------------------------


def test_remove_deletes_the_versions_objects(fake: FakeCluster, target: KubernetesTarget) -> None:
    fake.polls_until_ready = 0
    target.ensure(KEY, AUTOSCALED, timeout_s=30)
    target.remove(KEY)
    deletes = [c.path.split("/namespaces/default/")[1] for c in fake.calls if c.method == "DELETE"]
    assert deletes == [
        f"horizontalpodautoscalers/{NAME}",
        f"deployments/{NAME}",
        f"services/{NAME}",
        f"networkpolicies/{NAME}",  # last, after everything that makes pods or sends them traffic
    ]
    plurals = ("deployments", "services", "horizontalpodautoscalers", "networkpolicies")
    assert not any(fake.has(plural) for plural in plurals)
    target.remove(KEY)  # nothing left: every 404 is taken as done


def test_status_lists_the_model_server_deployments(fake: FakeCluster, target: KubernetesTarget) -> None:
    fake.polls_until_ready = 0
    target.ensure(KEY, FIXED, timeout_s=30)
    target.ensure(("mail", "spam", "v2"), AUTOSCALED, timeout_s=30)
    fake.stuck.add(object_name("mail", "spam", "v2"))
    fake.objects[("deployments", "default", "unrelated")] = {"metadata": {"name": "unrelated"}, "spec": {}}
    rows = target.status()
    (listing,) = [c for c in fake.calls if c.path == "/apis/apps/v1/namespaces/default/deployments"]
    assert listing.query["labelSelector"] == (
        "app.kubernetes.io/part-of=modelyard,app.kubernetes.io/component=model-server"
    )
    assert [(r.version, r.replica, r.state, r.url) for r in rows] == [
        ("v1", "deployment/mail-spam-v1", "ready", service_url("mail", "spam", "v1")),
        ("v2", "deployment/mail-spam-v2", "starting", service_url("mail", "spam", "v2")),
    ]
    assert rows[0].detail == "2 of 2 replicas ready"
    fake.past_deadline.add(object_name("mail", "spam", "v2"))
    assert target.status()[1].state == "failed"


def test_close_is_idempotent(target: KubernetesTarget) -> None:
    target.close()
    target.close()


# --- the kubeconfig ----------------------------------------------------------------------------------


def test_from_kubeconfig_without_one_names_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput) as raised:
        KubernetesTarget.from_kubeconfig(tmp_path / "missing")
    assert raised.value.field == "kubeconfig"
    assert str(tmp_path / "missing") in raised.value.message
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "also-missing"))
    with pytest.raises(InvalidInput, match="also-missing") as raised:
        KubernetesTarget()
    assert raised.value.field == "kubeconfig"


@pytest.fixture
def kubeconfig(cluster: tuple[FakeCluster, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig naming the fake API server, with a bearer token."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": cluster[1]}}],
        "users": [{"name": "ci", "user": {"token": "s3cret"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def test_from_kubeconfig_talks_to_the_cluster_it_names(fake: FakeCluster, kubeconfig: Path) -> None:
    path = kubeconfig
    with pytest.raises(InvalidInput, match="'nowhere'"):
        KubernetesTarget.from_kubeconfig(path, context="nowhere")
    with KubernetesTarget.from_kubeconfig(path, namespace="models") as target:
        assert target.status() == []
    assert fake.calls[-1].path == "/apis/apps/v1/namespaces/models/deployments"
    assert fake.calls[-1].headers["authorization"] == "Bearer s3cret"


def test_importing_the_target_does_not_import_the_client() -> None:
    code = "import sys, modelyard.deploy.targets.kubernetes.target; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_an_invalid_namespace_is_refused_before_connecting(kubeconfig: Path) -> None:
    with pytest.raises(InvalidInput) as raised:
        KubernetesTarget.from_kubeconfig(kubeconfig, namespace="Models_1")
    assert raised.value.field == "namespace"


# --- with the control plane's routing table (modelyard up --kubernetes) -------------------------------


def test_apply_through_the_target_routes_to_the_services(
    fake: FakeCluster, kubeconfig: Path, tmp_path: Path
) -> None:
    """``modelyard up --kubernetes``'s target with a real routing table: apply brings each version
    up in the (fake) cluster, then the route has the file's weights and each version's Service."""
    fake.polls_until_ready = 1
    settings = ControlSettings(home=tmp_path / "home")
    desired = DeployFile.model_validate(
        {"deployments": [{"project": "mail", "model": "spam", "versions": [
            {"version": "v1", "spec": {**FIXED.model_dump(exclude_defaults=True), "weight": 80}},
            {"version": "v2", "spec": {**AUTOSCALED.model_dump(exclude_defaults=True), "weight": 20}},
        ]}]}
    )  # fmt: skip
    target = kubernetes_target(str(kubeconfig), "models")(settings)
    assert isinstance(target, KubernetesTarget)
    target.poll_s = 0.05
    with target, RouteStore.open(settings) as routes:
        result = apply_file(desired, DeployFile(), target, routes, timeout_s=30)
        assert result.ok, result.error
        # A new model's route is created by apply after its versions are up: the target registers
        # the Services then, from its background thread.
        deadline = time.monotonic() + 10
        while (
            not all(v.replicas for v in routes.get("mail", "spam").versions) and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        route = routes.get("mail", "spam")
        # A second version of an existing model is registered by ensure itself.
        target.ensure(("mail", "spam", "v3"), FIXED, timeout_s=30)
        added = routes.get("mail", "spam").version("v3")
        assert added is not None
        assert added.replicas == (service_url("mail", "spam", "v3", "models"),)
    assert {v.version: (v.weight, v.replicas) for v in route.versions} == {
        "v1": (80, (service_url("mail", "spam", "v1", "models"),)),
        "v2": (20, (service_url("mail", "spam", "v2", "models"),)),
    }
    assert fake.has("deployments", namespace="models", name=object_name("mail", "spam", "v2"))
    assert fake.has("horizontalpodautoscalers", namespace="models", name=object_name("mail", "spam", "v2"))
