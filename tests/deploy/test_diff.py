"""The plan of what apply will do: actions, field-level changes, rendering, and its properties."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.deploy.diff import (
    Action,
    FieldChange,
    Plan,
    VersionChange,
    diff,
    field_changes,
    render_plan,
)
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.spec import (
    Batching,
    DeployFile,
    Deployment,
    Resources,
    ServerSettings,
    VersionDeployment,
    VersionSpec,
)
from tests.deploy.test_file import EXAMPLE


def deploy(models: dict[str, dict[str, dict[str, Any]]]) -> DeployFile:
    """``{"mail/spam": {"v1": {spec fields}}}`` -> a DeployFile."""
    deployments = []
    for key, versions in models.items():
        project, model = key.split("/")
        listed = [{"version": v, "spec": spec} for v, spec in versions.items()]
        deployments.append({"project": project, "model": model, "versions": listed})
    return DeployFile.model_validate({"deployments": deployments})


def actions(plan: Plan) -> list[tuple[str, str, Action]]:
    return [(f"{m.project}/{m.model}", v.version, v.action) for m in plan.models for v in m.versions]


def only_version(plan: Plan) -> VersionChange:
    ((model,),) = [[*m.versions] for m in plan.models]
    return model


V1 = {"uri": "spam@production", "replicas": 2, "weight": 100}


def test_identical_files_give_an_empty_plan() -> None:
    current = deploy({"mail/spam": {"v1": V1, "v2": {"uri": "spam/7", "weight": 0}}})
    plan = diff(current, current)
    assert plan.empty
    assert actions(plan) == [("mail/spam", "v1", Action.RETAIN), ("mail/spam", "v2", Action.RETAIN)]
    assert plan.counts == {Action.ADD: 0, Action.UPDATE: 0, Action.DELETE: 0, Action.RETAIN: 2}
    assert all(v.changes == [] for v in plan.models[0].versions)


def test_each_action_in_apply_order() -> None:
    current = deploy({"mail/spam": {"v0": {"uri": "spam/3", "weight": 1}, "v1": V1, "v9": V1}})
    desired = deploy(
        {"mail/spam": {"v9": V1, "v1": {**V1, "weight": 80}, "v2": {"uri": "spam/7", "weight": 20}}}
    )
    plan = diff(desired, current)
    assert not plan.empty
    assert actions(plan) == [
        ("mail/spam", "v2", Action.ADD),
        ("mail/spam", "v1", Action.UPDATE),
        ("mail/spam", "v0", Action.DELETE),
        ("mail/spam", "v9", Action.RETAIN),
    ]
    add, update, delete, retain = plan.models[0].versions
    assert update.changes == [FieldChange("weight", 100, 80)]
    assert add.changes == [FieldChange("uri", None, "spam/7"), FieldChange("weight", None, 20)]
    assert delete.changes == [FieldChange("uri", "spam/3", None), FieldChange("weight", 1, None)]
    assert (add.current, add.desired) == (None, desired.deployments[0].versions[2].spec)
    assert (delete.current, delete.desired) == (current.deployments[0].versions[0].spec, None)
    assert update.current is not None
    assert update.desired is not None
    assert (update.current.weight, update.desired.weight) == (100, 80)
    assert (retain.action, retain.changes) == (Action.RETAIN, [])
    assert plan.counts == {Action.ADD: 1, Action.UPDATE: 1, Action.DELETE: 1, Action.RETAIN: 1}
    assert plan.summary == "1 to add, 1 to update, 1 to delete, 1 unchanged"


def test_nested_fields_change_by_dotted_path() -> None:
    old = {**V1, "resources": {"cpu": 1, "memory": "1Gi"}, "batching": {"max_batch_size": 8}}
    new = {**V1, "resources": {"cpu": 1, "memory": "2Gi", "gpu": 1}, "batching": {"max_latency_ms": 5}}
    plan = diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": old}}))
    change = only_version(plan)
    assert change.action is Action.UPDATE
    assert change.changes == [
        FieldChange("resources.memory", "1Gi", "2Gi"),
        FieldChange("resources.gpu", 0, 1),
        FieldChange("batching.max_batch_size", 8, None),
        FieldChange("batching.max_latency_ms", None, 5.0),
    ]


def test_environment_variables_changed_added_and_removed() -> None:
    old = {**V1, "server": {"env": {"OMP_NUM_THREADS": "4", "GONE": "x"}}}
    new = {**V1, "server": {"env": {"NEW": "1", "OMP_NUM_THREADS": "2"}}}
    change = only_version(diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": old}})))
    assert change.changes == [
        FieldChange("server.env.NEW", None, "1"),
        FieldChange("server.env.OMP_NUM_THREADS", "4", "2"),
        FieldChange("server.env.GONE", "x", None),
    ]


def test_switching_from_replicas_to_autoscaling() -> None:
    new = {"uri": "spam@production", "weight": 100, "autoscaling": {"min_replicas": 1, "max_replicas": 4}}
    change = only_version(diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": V1}})))
    assert change.changes == [
        FieldChange("replicas", 2, None),
        FieldChange("autoscaling.min_replicas", None, 1),
        FieldChange("autoscaling.max_replicas", None, 4),
        FieldChange("autoscaling.target_cpu_percent", None, 70),
    ]


def test_a_probe_timing() -> None:
    new = {**V1, "probes": {"startup": {"period_s": 1}}}
    plan = diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": V1}}))
    assert only_version(plan).changes == [FieldChange("probes.startup.period_s", 2.0, 1.0)]
    # written on one side only: both values show, the default as the whole number it is
    assert "- probes.startup.period_s: 2\n" in render_plan(plan)
    assert "+ probes.startup.period_s: 1\n" in render_plan(plan)


def test_an_added_version_shows_what_its_file_wrote_not_the_defaults() -> None:
    desired = load_deploy_file(
        "deployments:\n- project: mail\n  model: spam\n  versions:\n  - version: v1\n"
        "    spec: {uri: spam/7, weight: 100, resources: {cpu: 2, memory: 1Gi},"
        " batching: {max_latency_ms: 0.5}, autoscaling: {min_replicas: 1, max_replicas: 4},"
        " probes: {startup: {period_s: 3}}}\n"
    )
    plan = diff(desired, DeployFile())
    assert [c.path for c in only_version(plan).changes] == [
        "uri",
        "autoscaling.min_replicas",
        "autoscaling.max_replicas",
        "resources.cpu",
        "resources.memory",
        "weight",
        "batching.max_latency_ms",
        "probes.startup.period_s",
    ]
    text = render_plan(plan)
    assert "target_cpu_percent" not in text  # a default nobody wrote
    assert "+ resources.cpu: 2\n" in text  # an int stays an int
    assert "+ batching.max_latency_ms: 0.5\n" in text
    assert "+ probes.startup.period_s: 3\n" in text
    assert "failure_threshold" not in text
    written = desired.deployments[0].versions[0].spec.model_copy(update={"resources": Resources(cpu=2.0)})
    assert "+ resources.cpu: 2.0" in render_plan(diff(deploy_with(written), DeployFile()))


def deploy_with(spec: VersionSpec) -> DeployFile:
    version = VersionDeployment(version="v1", spec=spec)
    return DeployFile(deployments=[Deployment(project="mail", model="spam", versions=[version])])


def test_an_update_prints_a_default_only_where_a_file_wrote_the_field() -> None:
    new = {"uri": "spam@production", "weight": 100, "autoscaling": {"min_replicas": 1, "max_replicas": 4}}
    plan = diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": V1}}))
    text = render_plan(plan)
    assert "- replicas: 2\n" in text
    assert "+ autoscaling.max_replicas: 4\n" in text
    # a change all the same (apply sees it), but neither file wrote it: no line
    assert FieldChange("autoscaling.target_cpu_percent", None, 70) in only_version(plan).changes
    assert "target_cpu_percent" not in text
    tuned = {**new, "autoscaling": {**new["autoscaling"], "target_cpu_percent": 50}}
    back = render_plan(diff(deploy({"mail/spam": {"v1": new}}), deploy({"mail/spam": {"v1": tuned}})))
    assert "- autoscaling.target_cpu_percent: 50\n" in back  # written on the old side: both show
    assert "+ autoscaling.target_cpu_percent: 70\n" in back


def test_a_model_removed_entirely_deletes_every_version_and_models_are_sorted() -> None:
    current = deploy({"mail/spam": {"v1": V1, "v2": V1}, "ads/ctr": {"v1": V1}})
    desired = deploy({"ads/ctr": {"v1": V1}, "zoo/cat": {"v1": V1}})
    plan = diff(desired, current)
    assert actions(plan) == [
        ("ads/ctr", "v1", Action.RETAIN),
        ("mail/spam", "v1", Action.DELETE),
        ("mail/spam", "v2", Action.DELETE),
        ("zoo/cat", "v1", Action.ADD),
    ]
    assert [m.key for m in plan.models] == [("ads", "ctr"), ("mail", "spam"), ("zoo", "cat")]


def test_an_empty_desired_file_deletes_everything() -> None:
    plan = diff(DeployFile(), deploy({"mail/spam": {"v1": V1}}))
    assert actions(plan) == [("mail/spam", "v1", Action.DELETE)]
    assert diff(DeployFile(), DeployFile()) == Plan([])
    assert diff(DeployFile(), DeployFile()).empty


def test_render_a_small_plan_exactly() -> None:
    current = deploy({"mail/spam": {"v1": V1, "v0": {"uri": "spam/3", "weight": 0, "mirror": True}}})
    desired = deploy(
        {"mail/spam": {"v1": {**V1, "weight": 80}, "v2": {"uri": "spam/7", "weight": 20, "replicas": 1}}}
    )
    assert render_plan(diff(desired, current)) == (
        "PROJECT: mail  MODEL: spam\n"
        "------------+---------+----------------\n"
        " APPLY WILL | VERSION | DIFF\n"
        "------------+---------+----------------\n"
        " ADD        | v2      | + uri: spam/7\n"
        "            |         | + replicas: 1\n"
        "            |         | + weight: 20\n"
        " UPDATE     | v1      | - weight: 100\n"
        "            |         | + weight: 80\n"
        " DELETE     | v0      | - uri: spam/3\n"
        "            |         | - mirror: true\n"
        "------------+---------+----------------\n"
        "\n"
        "1 to add, 1 to update, 1 to delete, 0 unchanged\n"
    )


def test_render_retained_versions_models_and_quoting() -> None:
    current = deploy({"ads/ctr": {"v1": V1}, "mail/spam": {"v1": {**V1, "resources": {"cpu": 1}}}})
    desired = deploy({"ads/ctr": {"v1": V1}, "mail/spam": {"v1": {**V1, "resources": {"cpu": "1"}}}})
    lines = render_plan(diff(desired, current)).splitlines()
    assert lines[:6] == [
        "PROJECT: ads  MODEL: ctr",
        "------------+---------+------",
        " APPLY WILL | VERSION | DIFF",
        "------------+---------+------",
        " RETAIN     | v1      |",
        "------------+---------+------",
    ]
    # a string that reads as a number is quoted, so a changed type shows
    assert " UPDATE     | v1      | - resources.cpu: 1" in lines
    assert '            |         | + resources.cpu: "1"' in lines
    assert lines[-1] == "0 to add, 1 to update, 0 to delete, 1 unchanged"
    assert render_plan(Plan([])) == "0 to add, 0 to update, 0 to delete, 0 unchanged\n"


def test_the_issue_example_against_a_single_version() -> None:
    desired = load_deploy_file(EXAMPLE)
    current = deploy({"mail/spam": {"v1": {**V1, "resources": {"cpu": 1, "memory": "1Gi"}}}})
    plan = diff(desired, current)
    assert [(v.action, v.version) for v in plan.models[0].versions] == [
        (Action.ADD, "v2"),
        (Action.UPDATE, "v1"),
    ]
    assert plan.models[0].versions[1].changes == [FieldChange("weight", 100, 80)]
    assert "+ batching.max_batch_size: 32" in render_plan(plan)


# --- properties ------------------------------------------------------------------------------------

specs = st.builds(
    VersionSpec,
    uri=st.sampled_from(["spam/1", "spam/2", "spam@production"]),
    replicas=st.none() | st.integers(0, 3),
    weight=st.integers(1, 100),
    mirror=st.sampled_from([False, True, 0.5]),
    resources=st.builds(Resources, memory=st.sampled_from([None, "1Gi", "512Mi"]), gpu=st.integers(0, 1)),
    batching=st.builds(Batching, max_batch_size=st.none() | st.integers(1, 64)),
    server=st.builds(
        ServerSettings, env=st.dictionaries(st.sampled_from(["A", "B", "C"]), st.sampled_from(["1", "2"]))
    ),
)
files = st.dictionaries(
    st.tuples(st.sampled_from(["ads", "mail"]), st.sampled_from(["ctr", "spam"])),
    st.dictionaries(st.sampled_from(["v1", "v2", "v3"]), specs, min_size=1, max_size=3),
    max_size=3,
).map(
    lambda models: DeployFile(
        deployments=[
            Deployment(
                project=project,
                model=model,
                versions=[VersionDeployment(version=v, spec=s) for v, s in versions.items()],
            )
            for (project, model), versions in models.items()
        ]
    )
)


def versions_of(file: DeployFile) -> set[tuple[str, str, str]]:
    return {(d.project, d.model, v.version) for d in file.deployments for v in d.versions}


def versions_with(plan: Plan, *wanted: Action) -> set[tuple[str, str, str]]:
    return {(m.project, m.model, v.version) for m in plan.models for v in m.versions if v.action in wanted}


def flat(spec: VersionSpec) -> dict[str, Any]:
    """Every set leaf of a spec by dotted path, computed independently of diff.py."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}{key}.")
        elif value is not None:
            out[prefix[:-1]] = value

    walk(spec.model_dump(), "")
    return out


@settings(max_examples=60, deadline=None)
@given(files)
def test_a_file_against_itself_is_an_empty_plan(file: DeployFile) -> None:
    plan = diff(file, file)
    assert plan.empty
    assert plan.counts[Action.RETAIN] == len(versions_of(file))


@settings(max_examples=80, deadline=None)
@given(desired=files, current=files)
def test_the_plan_covers_both_files(desired: DeployFile, current: DeployFile) -> None:
    plan = diff(desired, current)
    assert versions_with(plan, Action.ADD, Action.UPDATE, Action.RETAIN) == versions_of(desired)
    assert versions_with(plan, Action.DELETE, Action.UPDATE, Action.RETAIN) == versions_of(current)
    assert sum(plan.counts.values()) == len(versions_of(desired) | versions_of(current))
    assert plan.empty == (versions_of(desired) == versions_of(current) and plan.counts[Action.UPDATE] == 0)
    keys = [m.key for m in plan.models]
    assert keys == sorted(keys)
    assert render_plan(plan).splitlines()[-1] == plan.summary


@settings(max_examples=80, deadline=None)
@given(desired=files, current=files)
def test_updates_list_exactly_what_differs(desired: DeployFile, current: DeployFile) -> None:
    for model in diff(desired, current).models:
        for change in model.versions:
            if change.action not in (Action.UPDATE, Action.RETAIN):
                continue
            assert change.current is not None
            assert change.desired is not None
            assert (change.action is Action.UPDATE) == bool(change.changes)
            patched = flat(change.current)
            for field in change.changes:  # applying the changes to current gives desired
                assert patched.get(field.path) == field.old
                if field.new is None:
                    del patched[field.path]
                else:
                    patched[field.path] = field.new
            assert patched == flat(change.desired)


@settings(max_examples=60, deadline=None)
@given(a=files, b=files)
def test_the_reverse_plan_swaps_add_and_delete(a: DeployFile, b: DeployFile) -> None:
    forward, backward = diff(a, b), diff(b, a)
    assert versions_with(forward, Action.ADD) == versions_with(backward, Action.DELETE)
    assert versions_with(forward, Action.UPDATE) == versions_with(backward, Action.UPDATE)
    for old, new in zip(forward.models, backward.models, strict=True):
        updates = {v.version: v.changes for v in old.versions if v.action is Action.UPDATE}
        for version in new.versions:
            if version.action is Action.UPDATE:
                swapped = [FieldChange(c.path, c.new, c.old) for c in version.changes]
                assert sorted(swapped, key=lambda c: c.path) == sorted(
                    updates[version.version], key=lambda c: c.path
                )


@settings(max_examples=40, deadline=None)
@given(files)
def test_a_file_written_as_yaml_reads_back_the_same(file: DeployFile) -> None:
    text = yaml.safe_dump(file.model_dump(by_alias=True), sort_keys=False)
    assert diff(load_deploy_file(text), file).empty


def test_field_changes_of_equal_specs_is_empty() -> None:
    assert field_changes(VersionSpec(uri="a", mirror=True), VersionSpec(uri="a", mirror=1.0)) == []
