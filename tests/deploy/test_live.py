"""Plans against the live state: a real routing table (SQLite) changed behind apply's back, and the
recording target standing in for what runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.deploy.apply import apply_file
from modelyard.deploy.backend import ReplicaStatus
from modelyard.deploy.diff import Action, FieldChange, Plan, render_plan
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.live import live_plan, running_versions
from modelyard.deploy.spec import DeployFile
from modelyard.registry import ControlSettings
from modelyard.routing.store import RouteStore
from tests.deploy.support import RecordingTarget

CANARY = load_deploy_file("""
deployments:
- project: mail
  model: spam
  versions:
  - {version: v1, spec: {uri: spam@production, replicas: 2, weight: 80}}
  - {version: v2, spec: {uri: spam/7, weight: 20}}
""")
EMPTY = DeployFile()


@pytest.fixture
def routes(tmp_path: Path) -> Iterator[RouteStore]:
    with RouteStore.open(ControlSettings(home=tmp_path / "home")) as store:
        yield store


@pytest.fixture
def target(routes: RouteStore) -> RecordingTarget:
    target = RecordingTarget()
    assert apply_file(CANARY, EMPTY, target, routes).ok
    target.calls.clear()
    return target


def plan(
    desired: DeployFile, routes: RouteStore, target: RecordingTarget, applied: DeployFile = CANARY
) -> Plan:
    return live_plan(desired, applied, routes, running_versions(target.status()))


def actions(found: Plan) -> dict[str, Action]:
    return {v.version: v.action for m in found.models for v in m.versions}


def weights(routes: RouteStore) -> dict[str, int]:
    return {v.version: v.weight for v in routes.get("mail", "spam").versions}


def test_nothing_changed_live_is_an_empty_plan(routes: RouteStore, target: RecordingTarget) -> None:
    found = plan(CANARY, routes, target)
    assert found.empty
    assert found.drift == []
    assert "DRIFT" not in render_plan(found)


def test_a_weight_changed_live_is_drift_and_apply_sets_it_back(
    routes: RouteStore, target: RecordingTarget
) -> None:
    routes.set_weights("mail", "spam", {"v1": 50, "v2": 50})  # modelyard route set mail/spam v1=50 v2=50
    found = plan(CANARY, routes, target)
    assert [str(d) for d in found.drift] == [
        "mail/spam: weights changed live since the last apply (v1 80 -> 50, v2 20 -> 50); "
        "apply overwrites them"
    ]
    assert actions(found) == {"v1": Action.UPDATE, "v2": Action.UPDATE}
    assert found.models[0].versions[0].changes == [FieldChange("weight", 50, 80)]
    text = render_plan(found)
    assert text.startswith("DRIFT (the live state differs from the last apply):\n  mail/spam: weights")
    assert "- weight: 50" in text
    assert "+ weight: 80" in text
    assert apply_file(CANARY, EMPTY, target, routes, plan=found).ok
    assert weights(routes) == {"v1": 80, "v2": 20}
    assert target.calls == []  # traffic only: no replica was touched
    assert plan(CANARY, routes, target).empty


def test_a_version_routed_live_that_no_file_lists_is_set_back_to_zero(
    routes: RouteStore, target: RecordingTarget
) -> None:
    routes.set_weights("mail", "spam", {"v9": 50}, replace=False)
    routes.set_mirror("mail", "spam", "v8", 0.25)
    found = plan(CANARY, routes, target)
    assert [d.message for d in found.drift] == [
        "weights changed live since the last apply (v9 0 -> 50); apply overwrites them",
        "mirrors changed live since the last apply (v8 off -> 25%); apply overwrites them",
    ]
    assert actions(found) == {"v1": Action.RETAIN, "v2": Action.RETAIN}
    assert not found.empty  # no version changes, but the routing table does
    assert apply_file(CANARY, EMPTY, target, routes, plan=found).ok
    assert weights(routes) == {"v1": 80, "v2": 20, "v8": 0, "v9": 0}
    v8 = routes.get("mail", "spam").version("v8")
    assert v8 is not None
    assert not v8.mirror
    assert plan(CANARY, routes, target).empty


def test_a_live_change_the_file_now_agrees_with_is_reported_but_not_overwritten(
    routes: RouteStore, target: RecordingTarget
) -> None:
    routes.set_weights("mail", "spam", {"v1": 50, "v2": 50})
    agreed = load_deploy_file(
        CANARY.model_dump_json(by_alias=True)
        .replace('"weight":80', '"weight":50')
        .replace('"weight":20', '"weight":50')
    )
    found = plan(agreed, routes, target)
    assert [d.overwrite for d in found.drift] == [False]
    assert found.drift[0].message.endswith("the file agrees with them now")
    assert found.empty


def test_a_route_deleted_live_is_written_again(routes: RouteStore, target: RecordingTarget) -> None:
    routes.delete("mail", "spam")
    found = plan(CANARY, routes, target)
    assert [d.message for d in found.drift] == [
        "route deleted live since the last apply; apply writes it again"
    ]
    assert found.models[0].versions[0].changes == [FieldChange("weight", 0, 80)]
    assert apply_file(CANARY, EMPTY, target, routes, plan=found).ok
    assert weights(routes) == {"v1": 80, "v2": 20}


def test_a_version_that_stopped_running_is_started_again(routes: RouteStore, target: RecordingTarget) -> None:
    target.running.pop(("mail", "spam", "v2"))  # as after `modelyard up` restarted: its replicas are gone
    found = plan(CANARY, routes, target)
    assert [d.message for d in found.drift] == [
        "v2 is not running, though the last apply started it; apply starts it again"
    ]
    assert actions(found) == {"v2": Action.ADD, "v1": Action.RETAIN}
    assert apply_file(CANARY, EMPTY, target, routes, plan=found).ok
    assert target.calls == [("ensure", ("mail", "spam", "v2"))]
    assert plan(CANARY, routes, target).empty


def test_a_version_a_failed_apply_left_running_is_stopped(
    routes: RouteStore, target: RecordingTarget
) -> None:
    target.running[("mail", "spam", "v3")] = CANARY.deployments[0].versions[1].spec
    target.running[("ads", "ctr", "v1")] = CANARY.deployments[0].versions[1].spec
    found = plan(CANARY, routes, target)
    assert [str(d) for d in found.drift] == [
        "ads/ctr: v1 runs, but no successful apply lists it; apply stops it",
        "mail/spam: v3 runs, but no successful apply lists it; apply stops it",
    ]
    assert [(m.key, v.version, v.action) for m in found.models for v in m.versions] == [
        (("ads", "ctr"), "v1", Action.DELETE),
        (("mail", "spam"), "v3", Action.DELETE),
        (("mail", "spam"), "v1", Action.RETAIN),
        (("mail", "spam"), "v2", Action.RETAIN),
    ]
    assert found.summary == "0 to add, 0 to update, 2 to delete, 2 unchanged"
    assert apply_file(CANARY, EMPTY, target, routes, plan=found).ok
    assert set(target.running) == {("mail", "spam", "v1"), ("mail", "spam", "v2")}


def test_a_route_made_by_hand_is_taken_over_by_the_first_apply(routes: RouteStore) -> None:
    routes.set_weights("mail", "spam", {"old": 100})
    found = plan(CANARY, routes, RecordingTarget(), applied=EMPTY)
    assert [d.message for d in found.drift] == [
        "routed by hand, not by an apply (old=100); apply takes the route over"
    ]
    assert actions(found) == {"v1": Action.ADD, "v2": Action.ADD}
    assert plan(EMPTY, routes, RecordingTarget(), applied=EMPTY).drift == []  # not the file's business


def test_stopping_replicas_do_not_count_as_running() -> None:
    rows = [
        ReplicaStatus("mail", "spam", "v1", "0", None, "stopping"),
        ReplicaStatus("mail", "spam", "v2", "0", None, "stopping"),
        ReplicaStatus("mail", "spam", "v2", "1", "http://x", "ready"),
    ]
    assert running_versions(rows) == {("mail", "spam", "v2")}
