"""The Kubernetes manifests (deploy/kubernetes.py): every rendered object validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail too), and what the
objects mean checked field by field. No cluster runs here: nothing is applied."""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from modelyard.deploy.spec import DeployFile
from modelyard.deploy.targets.kubernetes import manifests as kubernetes
from modelyard.deploy.targets.kubernetes.manifests import object_name, render, service_url, to_yaml
from modelyard.errors import InvalidInput
from modelyard.package import docker
from modelyard.routing.route_file import SUFFIXES, RouteFile
from modelyard.routing.table import check_replica_url, route_from_dict

# The oldest schemas the package ships, the version the issue names, and the newest it ships.
K8S_VERSIONS = ("1.25", "1.30", kubernetes_validate.latest_version())
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
IMAGE = "registry.example.com/models/spam:1"
DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"

ISSUE_EXAMPLE = """
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {uri: spam@production, replicas: 2, resources: {cpu: 1, memory: 1Gi}, weight: 80}
  - version: v2
    spec: {uri: spam/7, replicas: 1, weight: 20, batching: {max_batch_size: 32}}
"""

AUTOSCALED = """
deployments:
- project: shop
  model: ranker
  versions:
  - version: "3"
    spec:
      uri: ranker@production
      autoscaling: {min_replicas: 2, max_replicas: 10, target_cpu_percent: 60}
      resources: {cpu: 500m, memory: 2Gi}
      weight: 90
      server: {intra_op_threads: 2, max_queue: 256, env: {OMP_NUM_THREADS: "2", LOG_FORMAT: json}}
      batching: {max_batch_size: 64, max_latency_ms: 2.5}
      probes:
        startup: {period_s: 2.5, timeout_s: 1, failure_threshold: 90, initial_delay_s: 3}
        readiness: {period_s: 4, timeout_s: 0.5, failure_threshold: 2}
        liveness: {period_s: 15, timeout_s: 3, failure_threshold: 4, initial_delay_s: 1}
  - version: "4"
    spec: {uri: ranker/4, replicas: 1, mirror: 0.25}
"""

GPU = """
deployments:
- project: vision
  model: detector
  versions:
  - version: v1
    spec: {uri: dist/detector-1.modelyard, replicas: 1, weight: 1,
           resources: {cpu: 4, memory: 16Gi, gpu: 2}, image: "ghcr.io/acme/detector:1"}
"""

ODD_NAMES = """
# The first project and version are 63 characters: the longest names a deploy file allows.
deployments:
- project: Team_Alpha.Research-Division-With-A-Rather-Long-Name-0123456789
  model: 7-Spam.Detector_v2
  versions:
  - version: release-candidate.2026.01.02_build-0000000000000000000000000000
    spec: {uri: spam/1, replicas: 1, weight: 1}
  - version: v1.
    spec: {uri: spam/2, replicas: 1, weight: 1}
- project: a-b
  model: c
  versions:
  - version: v1
    spec: {uri: c/1, weight: 1}
- project: a
  model: b-c
  versions:
  - version: v1
    spec: {uri: b-c/1, weight: 1}
"""

FILES = {"issue-example": ISSUE_EXAMPLE, "autoscaled": AUTOSCALED, "gpu": GPU, "odd-names": ODD_NAMES}


@pytest.fixture(scope="session", autouse=True)
def _cached_schemas() -> Iterator[None]:
    """kubernetes-validate re-reads its JSON schemas on every call (~9 ms); read each once."""
    with pytest.MonkeyPatch.context() as patch:
        cached = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
        patch.setattr(kubernetes_validate.utils, "schema_contents", cached)
        yield


def load(text: str) -> DeployFile:
    return DeployFile.model_validate(yaml.safe_load(text))


def rendered(text: str, **kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("image_for", lambda spec: spec.image or IMAGE)
    return render(load(text), **kwargs)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [item for item in by_kind(objects, kind) if item["metadata"]["name"] == name]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


# --- schema validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(FILES))
def test_every_object_validates_against_the_kubernetes_schemas(case: str, version: str) -> None:
    objects = rendered(FILES[case], namespace="models")
    assert objects
    for item in objects:
        assert kubernetes_validate.validate(item, version, strict=True)
    # What `modelyard deploy render` writes is the same objects, so it validates too.
    for item in yaml.safe_load_all(to_yaml(objects)):
        kubernetes_validate.validate(item, version, strict=True)


def test_the_validator_has_teeth() -> None:
    """A wrong type and an unknown field both fail: passing the tests above means something."""
    (deployment, *_) = rendered(ISSUE_EXAMPLE)
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    unknown = json.loads(json.dumps(deployment))
    container(unknown)["startupProbe"]["periodSecond"] = 2
    for bad in (wrong_type, unknown):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, "1.30", strict=True)


@pytest.mark.parametrize("case", sorted(FILES))
def test_names_and_label_values_are_valid_and_unique(case: str) -> None:
    objects = rendered(FILES[case])
    keys = [(item["kind"], item["metadata"]["name"]) for item in objects]
    assert len(keys) == len(set(keys))
    for item in objects:
        name = item["metadata"]["name"]
        assert len(name) <= 63
        assert DNS_1035.fullmatch(name), name
        labels = dict(item["metadata"]["labels"])
        if item["kind"] == "Deployment":
            labels |= item["spec"]["template"]["metadata"]["labels"]
        for key, value in labels.items():
            assert len(value) <= 63
            assert LABEL_VALUE.fullmatch(value), (key, value)


# --- names ------------------------------------------------------------------------------------------


def test_plain_names_are_kept_readable() -> None:
    assert object_name("mail", "spam", "v1") == "mail-spam-v1"
    assert object_name("mail", "spam", suffix="routes") == "mail-spam-routes"
    assert service_url("mail", "spam", "v1", "models") == "http://mail-spam-v1.models.svc.cluster.local:80"


@pytest.mark.parametrize(
    "parts",
    [
        ("Mail", "spam", "v1"),  # upper case
        ("mail", "spam", "v1.2"),  # dots
        ("mail", "spam_filter", "v1"),  # underscores
        ("1mail", "spam", "v1"),  # a Service name must start with a letter
        ("a" * 30, "b" * 30, "c" * 30),  # too long
        ("mail", "spam-detector", "v1"),  # "-" inside a part: ambiguous when joined
    ],
)
def test_other_names_are_sanitised_with_a_hash(parts: tuple[str, str, str]) -> None:
    name = object_name(*parts)
    assert DNS_1035.fullmatch(name)
    assert len(name) <= 63
    assert re.search(r"-[0-9a-f]{8}$", name)
    assert object_name(*parts) == name  # deterministic


def test_names_that_would_meet_when_joined_stay_apart() -> None:
    assert object_name("a-b", "c", "v1") != object_name("a", "b-c", "v1")
    assert object_name("mail", "spam", "V1") != object_name("mail", "spam", "v1")
    assert object_name("x" * 40, "y" * 40, "1") != object_name("x" * 40, "y" * 40, "2")


def test_odd_names_render_their_real_names_into_the_routes() -> None:
    objects = rendered(ODD_NAMES)
    file = load(ODD_NAMES)
    first = file.deployments[0]
    config_map = named(objects, "ConfigMap", object_name(first.project, first.model, suffix="routes"))
    route = json.loads(config_map["data"]["routes.json"])
    assert (route["project"], route["model"]) == (first.project, first.model)
    assert [v["version"] for v in route["versions"]] == [v.version for v in first.versions]
    for version in route["versions"]:
        (url,) = version["replicas"]
        host = url.removeprefix("http://").split(".")[0]
        assert named(objects, "Service", host)  # the URL names the version's Service


# --- what the objects mean --------------------------------------------------------------------------


def test_the_issue_example() -> None:
    objects = rendered(ISSUE_EXAMPLE, namespace="models")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Deployment", "mail-spam-v1"),
        ("Service", "mail-spam-v1"),
        ("NetworkPolicy", "mail-spam-v1"),
        ("Deployment", "mail-spam-v2"),
        ("Service", "mail-spam-v2"),
        ("NetworkPolicy", "mail-spam-v2"),
        ("ConfigMap", "mail-spam-routes"),
    ]
    assert {o["metadata"]["namespace"] for o in objects} == {"models"}
    v1, v2 = by_kind(objects, "Deployment")
    assert (v1["spec"]["replicas"], v2["spec"]["replicas"]) == (2, 1)
    assert container(v1)["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert "resources" not in container(v2)  # nothing asked, nothing set
    assert container(v1)["image"] == IMAGE
    assert container(v1)["command"] == ["modelyard", "serve"]
    assert container(v1)["args"][:1] == ["spam@production"]
    assert container(v2)["args"][:1] == ["spam/7"]
    assert by_kind(objects, "HorizontalPodAutoscaler") == []


def test_the_server_command_line() -> None:
    objects = rendered(AUTOSCALED)
    args = container(named(objects, "Deployment", "shop-ranker-3"))["args"]
    assert args[0] == "ranker@production"
    pairs = dict(zip(args[1::2], args[2::2], strict=True))
    assert pairs == {
        "--name": "ranker",  # the served name is the routed model's: the gateway's upstream path
        "--host": "0.0.0.0",
        "--port": "8080",
        "--max-batch-size": "64",
        "--max-latency-ms": "2.5",
        "--intra-op-threads": "2",
        "--max-queue": "256",
    }
    plain = container(named(objects, "Deployment", "shop-ranker-4"))["args"]
    assert plain == ["ranker/4", "--name", "ranker", "--host", "0.0.0.0", "--port", "8080"]


def test_probes_point_at_the_server_endpoints_with_the_spec_timings() -> None:
    main = container(named(rendered(AUTOSCALED), "Deployment", "shop-ranker-3"))
    expected = {
        "startupProbe": ("/health/startup", 3, 3, 1, 90),  # 2.5 s rounded up: whole seconds only
        "readinessProbe": ("/health/ready", 0, 4, 1, 2),  # 0.5 s timeout: at least 1
        "livenessProbe": ("/health/live", 1, 15, 3, 4),
    }
    for key, (path, delay, period, timeout, failures) in expected.items():
        assert main[key] == {
            "httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": timeout,
            "failureThreshold": failures,
        }
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_default_probe_timings_are_the_specs_defaults() -> None:
    main = container(rendered(ISSUE_EXAMPLE)[0])
    timings = {
        key: (main[key]["periodSeconds"], main[key]["timeoutSeconds"], main[key]["failureThreshold"])
        for key in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert timings == {"startupProbe": (2, 2, 60), "readinessProbe": (5, 2, 3), "livenessProbe": (10, 2, 3)}


def test_environment_and_resources() -> None:
    main = container(named(rendered(AUTOSCALED), "Deployment", "shop-ranker-3"))
    assert main["env"] == [{"name": "LOG_FORMAT", "value": "json"}, {"name": "OMP_NUM_THREADS", "value": "2"}]
    assert main["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "500m", "memory": "2Gi"},
    }


def test_gpus_are_a_limit_the_gpu_taint_is_tolerated_and_the_server_asks_cuda() -> None:
    (deployment,) = by_kind(rendered(GPU), "Deployment")
    main = container(deployment)
    assert main["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"},
    }
    assert deployment["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert main["image"] == "ghcr.io/acme/detector:1"  # the spec's own image
    assert "tolerations" not in rendered(ISSUE_EXAMPLE)[0]["spec"]["template"]["spec"]
    assert main["args"][-2:] == ["--device", "cuda"]  # the device plugin shows the pod its GPUs only
    assert "--device" not in container(rendered(ISSUE_EXAMPLE)[0])["args"]  # CPU pods keep the default


@pytest.mark.parametrize(("cpu", "quantity"), [(1, "1"), (0.5, "0.5"), (2.25, "2.25"), ("750m", "750m")])
def test_cpu_quantities(cpu: Any, quantity: str) -> None:
    text = ISSUE_EXAMPLE.replace("cpu: 1,", f"cpu: {cpu},")
    assert container(rendered(text)[0])["resources"]["requests"]["cpu"] == quantity


def test_autoscaled_versions_get_an_hpa_and_no_replicas() -> None:
    objects = rendered(AUTOSCALED)
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["metadata"]["name"] == "shop-ranker-3"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-ranker-3"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
            }
        ],
    }
    assert "replicas" not in named(objects, "Deployment", "shop-ranker-3")["spec"]
    assert named(objects, "Deployment", "shop-ranker-4")["spec"]["replicas"] == 1


def test_autoscaling_without_a_cpu_request_is_refused() -> None:
    text = AUTOSCALED.replace("resources: {cpu: 500m, memory: 2Gi}", "resources: {memory: 2Gi}")
    with pytest.raises(InvalidInput) as caught:
        rendered(text)
    assert caught.value.field == "deployments[0].versions[0].spec.resources.cpu"


def test_a_replica_gate_is_refused_not_dropped_from_the_manifests() -> None:
    text = AUTOSCALED.replace(
        "spec: {uri: ranker/4, replicas: 1, mirror: 0.25}",
        "spec: {uri: ranker/4, replicas: 3, replica_gate: {for: 30s}}",
    )
    with pytest.raises(InvalidInput) as caught:
        rendered(text)
    assert caught.value.field == "deployments[0].versions[1].spec.replica_gate"
    assert "canary rollout" in caught.value.message


@pytest.mark.parametrize("case", sorted(FILES))
def test_each_service_selects_exactly_its_versions_pods(case: str) -> None:
    objects = rendered(FILES[case])
    deployments = by_kind(objects, "Deployment")
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels[deployment["metadata"]["name"]].items()
    for service in by_kind(objects, "Service"):
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
        ]
        selector = service["spec"]["selector"]
        assert (
            selector
            == named(objects, "Deployment", service["metadata"]["name"])["spec"]["selector"]["matchLabels"]
        )
        matched = [name for name, labels in pod_labels.items() if selector.items() <= labels.items()]
        assert matched == [service["metadata"]["name"]]
        assert selector["app.kubernetes.io/part-of"] == "modelyard"


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("case", sorted(FILES))
def test_each_version_has_a_network_policy_letting_in_only_the_gateway_and_control_plane(case: str) -> None:
    objects = rendered(FILES[case])
    deployments = by_kind(objects, "Deployment")
    policies = by_kind(objects, "NetworkPolicy")
    assert sorted(p["metadata"]["name"] for p in policies) == sorted(
        d["metadata"]["name"] for d in deployments
    )
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for policy in policies:
        spec = policy["spec"]
        # It selects exactly its version's pods: every other version keeps its own policy.
        matched = [
            name
            for name, labels in pod_labels.items()
            if _matches(spec["podSelector"]["matchLabels"], labels)
        ]
        assert matched == [policy["metadata"]["name"]]
        assert spec["policyTypes"] == ["Ingress"]  # egress is left alone: registry refs are fetched
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]  # the serving port, nothing else
        peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
        assert peers == [dict(labels) for labels in kubernetes.PEER_LABELS]
        assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # same namespace only
        # No model server is a peer of another: one compromised replica cannot reach the rest.
        assert not any(_matches(peer, labels) for peer in peers for labels in pod_labels.values())


def test_the_network_policy_peers_are_the_documented_labels() -> None:
    """docs/deploy.md's gateway Deployment carries the gateway's peer label, and the page names
    both labels, so a gateway set up as documented gets through."""
    text = DEPLOY_DOC.read_text()
    section = text.split("### Running the gateway in the cluster", 1)[1]
    manifest = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    gateway_pods = manifest["spec"]["template"]["metadata"]["labels"]
    assert _matches(kubernetes.PEER_LABELS[0], gateway_pods)
    for labels in kubernetes.PEER_LABELS:
        for key, value in labels.items():
            assert f"{key}: {value}" in text or f"{key}={value}" in text


def test_the_network_policy_matches_what_the_server_listens_on() -> None:
    """The port the policy opens is the container's port and the probes' port: probes need no rule
    (the kubelet's traffic from the pod's node is always allowed), and nothing else is open."""
    objects = rendered(ISSUE_EXAMPLE)
    policy = named(objects, "NetworkPolicy", "mail-spam-v1")
    served = container(named(objects, "Deployment", "mail-spam-v1"))
    (port,) = served["ports"]
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == port["containerPort"] == kubernetes.PORT
    assert {
        served[probe]["httpGet"]["port"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    } == {kubernetes.PORT}
    assert "--model-control" not in served["args"]  # model control stays off in the cluster


def test_labels_name_the_project_model_and_version() -> None:
    v1 = rendered(ISSUE_EXAMPLE)[0]
    labels = v1["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "modelyard"
    assert "app.kubernetes.io/name" in labels
    assert (labels["modelyard.io/project"], labels["modelyard.io/model"], labels["modelyard.io/version"]) == (
        "mail",
        "spam",
        "v1",
    )
    assert v1["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


def test_routes_config_map_is_the_gateways_route() -> None:
    objects = rendered(AUTOSCALED, namespace="prod")
    (config_map,) = by_kind(objects, "ConfigMap")
    assert config_map["metadata"]["name"] == "shop-ranker-routes"
    assert list(config_map["data"]) == ["routes.json"]
    data = json.loads(config_map["data"]["routes.json"])
    route = route_from_dict(data)  # the gateway reads it as it is
    assert (route.project, route.model) == ("shop", "ranker")
    live, mirror = route.versions
    assert (live.version, live.weight, live.mirror) == ("3", 90, False)
    assert (mirror.version, mirror.weight, mirror.mirror, mirror.mirror_fraction) == ("4", 0, True, 0.25)
    for version in route.versions:
        (url,) = version.replicas
        assert url == f"http://shop-ranker-{version.version}.prod.svc.cluster.local:80"
        assert check_replica_url(url) == url
        assert version.target == "ranker"


@pytest.mark.parametrize("case", sorted(FILES))
def test_the_gateways_routes_file_reads_the_rendered_config_maps(case: str, tmp_path: Path) -> None:
    """``modelyard gateway serve --routes FOLDER`` with the ConfigMaps mounted (after the YAML that
    `modelyard deploy render` writes): every route, as the ConfigMaps say."""
    objects = list(yaml.safe_load_all(to_yaml(rendered(FILES[case], namespace="prod"))))
    config_maps = by_kind(objects, "ConfigMap")
    for config_map in config_maps:  # as a projected volume mounts them: one file each
        (tmp_path / f"{config_map['metadata']['name']}.json").write_text(config_map["data"]["routes.json"])
    table = RouteFile(tmp_path).load()
    expected = [route_from_dict(json.loads(item["data"]["routes.json"])) for item in config_maps]
    assert sorted(table.routes.values(), key=repr) == sorted(expected, key=repr)
    assert len(table.routes) == len(config_maps) >= 1
    single = tmp_path / "one"  # one ConfigMap as a plain configMap volume: its key is the file name
    single.mkdir()
    (single / "routes.json").write_text(config_maps[0]["data"]["routes.json"])
    assert list(RouteFile(single).load().routes.values()) == expected[:1]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_documented_gateway_deployment_mounts_the_routes_config_map(version: str) -> None:
    """docs/deploy.md's gateway Deployment is a valid object whose --routes folder is where the
    rendered routes ConfigMap is mounted."""
    section = DEPLOY_DOC.read_text().split("### Running the gateway in the cluster", 1)[1]
    manifest = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert kubernetes_validate.validate(manifest, version, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    gateway = container(manifest)
    assert gateway["command"] == ["modelyard", "gateway", "serve"]
    args = gateway["args"]
    (mount,) = gateway["volumeMounts"]
    assert args[args.index("--routes") + 1] == mount["mountPath"]
    (volume,) = [item for item in pod["volumes"] if item["name"] == mount["name"]]
    (source,) = volume["projected"]["sources"]
    (config_map,) = by_kind(rendered(ISSUE_EXAMPLE, namespace=manifest["metadata"]["namespace"]), "ConfigMap")
    assert source["configMap"]["name"] == config_map["metadata"]["name"]
    (item,) = source["configMap"]["items"]
    assert item["key"] in config_map["data"]
    assert item["path"].endswith(SUFFIXES)


def test_issue_example_routes_split_80_20() -> None:
    (config_map,) = by_kind(rendered(ISSUE_EXAMPLE), "ConfigMap")
    versions = json.loads(config_map["data"]["routes.json"])["versions"]
    assert {v["version"]: (v["weight"], v["mirror"]) for v in versions} == {
        "v1": (80, False),
        "v2": (20, False),
    }


def test_a_mirror_true_version_mirrors_everything() -> None:
    text = ISSUE_EXAMPLE.replace("weight: 20,", "weight: 0, mirror: true,")
    (config_map,) = by_kind(rendered(text), "ConfigMap")
    v2 = json.loads(config_map["data"]["routes.json"])["versions"][1]
    assert (v2["mirror"], v2["mirror_fraction"], v2["weight"]) == (True, 1.0, 0)


def test_pods_drain_and_run_restricted() -> None:
    deployment = rendered(ISSUE_EXAMPLE)[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 30 + 5  # the server's drain timeout plus the pause
    assert container(deployment)["lifecycle"]["preStop"]["exec"]["command"][0] == "python"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(deployment)["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_conventions_match_the_image_from_modelyard_dockerfile() -> None:
    assert kubernetes.PORT == docker.PORT
    uid = rendered(ISSUE_EXAMPLE)[0]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert f"--uid {uid} " in inspect.getsource(docker)


# --- images and bad input ---------------------------------------------------------------------------


def test_image_for_wins_over_the_spec_image() -> None:
    objects = render(load(GPU), image_for=lambda spec: f"built/{spec.uri.split('/')[-1]}")
    assert container(objects[0])["image"] == "built/detector-1.modelyard"


def test_a_version_without_an_image_names_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        render(load(ISSUE_EXAMPLE))
    assert caught.value.field == "deployments[0].versions[0].spec.image"
    assert "modelyard dockerfile" in caught.value.message
    text = ISSUE_EXAMPLE.replace("weight: 80}", f'weight: 80, image: "{IMAGE}"}}')
    with pytest.raises(InvalidInput) as caught:
        render(load(text))
    assert caught.value.field == "deployments[0].versions[1].spec.image"


@pytest.mark.parametrize("namespace", ["Models", "-x", "a" * 64, "has.dot", ""])
def test_an_invalid_namespace_is_refused(namespace: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rendered(ISSUE_EXAMPLE, namespace=namespace)
    assert caught.value.field == "namespace"


def test_an_environment_name_kubernetes_refuses_is_reported() -> None:
    text = ISSUE_EXAMPLE.replace("max_batch_size: 32}", 'max_batch_size: 32}, server: {env: {"9LIVES": x}}')
    with pytest.raises(InvalidInput) as caught:
        rendered(text)
    assert caught.value.field == "deployments[0].versions[1].spec.server.env.9LIVES"


# --- YAML -------------------------------------------------------------------------------------------


def test_yaml_is_stable_multi_document_and_round_trips() -> None:
    objects = rendered(AUTOSCALED)
    text = to_yaml(objects)
    assert text == to_yaml(rendered(AUTOSCALED))
    assert text.startswith("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n")
    assert text.count("\n---\n") == len(objects) - 1
    assert list(yaml.safe_load_all(text)) == objects
    assert "  routes.json: |\n" in text  # the JSON as a readable block, not an escaped string
    assert to_yaml([]) == ""
