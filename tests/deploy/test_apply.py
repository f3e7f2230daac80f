"""The apply orchestrator against the real routing store (SQLite) and an in-memory target.

The target here is a stand-in for our own ``DeployTarget`` protocol that records calls and can be
told to fail; the local backend (real ``modelyard serve`` processes) has its own tests, and the
end-to-end apply test in tests/e2e drives both together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.deploy.apply import apply_file
from modelyard.deploy.file import load_deploy_file
from modelyard.deploy.spec import DeployFile
from modelyard.errors import NotFound
from modelyard.registry import ControlSettings
from modelyard.routing.store import RouteStore
from tests.deploy.support import RecordingTarget

EMPTY = DeployFile()


@pytest.fixture
def routes(tmp_path: Path) -> Iterator[RouteStore]:
    with RouteStore.open(ControlSettings(home=tmp_path / "home")) as store:
        yield store


def deploy(text: str) -> DeployFile:
    return load_deploy_file(text, "deploy.yaml")


V1_ONLY = deploy("""
deployments:
- project: mail
  model: spam
  versions:
  - {version: v1, spec: {uri: spam@production, replicas: 2, weight: 100}}
""")
CANARY = deploy("""
deployments:
- project: mail
  model: spam
  versions:
  - {version: v1, spec: {uri: spam@production, replicas: 2, weight: 80}}
  - {version: v2, spec: {uri: spam/7, weight: 20, batching: {max_batch_size: 32}}}
  - {version: v3, spec: {uri: spam/8, mirror: 0.5}}
- project: mail
  model: ham
  versions:
  - {version: v1, spec: {uri: ham/1, weight: 1}}
""")


def weights(routes: RouteStore, model: str = "spam") -> dict[str, int]:
    return {v.version: v.weight for v in routes.get("mail", model).versions}


def test_first_apply_brings_up_every_version_then_routes_it(routes: RouteStore) -> None:
    target = RecordingTarget()
    lines: list[str] = []
    result = apply_file(CANARY, EMPTY, target, routes, progress=lines.append)
    assert result.ok, result.error
    assert set(target.running) == {
        ("mail", "spam", "v1"),
        ("mail", "spam", "v2"),
        ("mail", "spam", "v3"),
        ("mail", "ham", "v1"),
    }
    assert weights(routes) == {"v1": 80, "v2": 20, "v3": 0}
    mirror = routes.get("mail", "spam").version("v3")
    assert mirror is not None
    assert (mirror.mirror, mirror.mirror_fraction) == (True, 0.5)
    assert weights(routes, "ham") == {"v1": 1}
    assert "PROJECT: mail MODEL: spam" in lines
    assert any("ADD (2/3) v2" in line for line in lines)


def test_a_second_apply_of_the_same_file_does_nothing(routes: RouteStore) -> None:
    target = RecordingTarget()
    apply_file(CANARY, EMPTY, target, routes)
    target.calls.clear()
    revision = routes.revision()
    result = apply_file(CANARY, CANARY, target, routes)
    assert result.ok
    assert result.plan.empty
    assert target.calls == []
    assert routes.revision() == revision  # not even a routing write


def test_an_update_shifts_weights_rolls_changed_versions_and_deletes_the_rest(routes: RouteStore) -> None:
    target = RecordingTarget()
    apply_file(CANARY, EMPTY, target, routes)
    target.calls.clear()
    result = apply_file(V1_ONLY, CANARY, target, routes)
    assert result.ok, result.error
    assert target.calls == [  # v1 only changes weight: no restart of its replicas
        ("remove", ("mail", "ham", "v1")),
        ("remove", ("mail", "spam", "v2")),
        ("remove", ("mail", "spam", "v3")),
    ]
    assert weights(routes) == {"v1": 100}
    with pytest.raises(NotFound):
        routes.get("mail", "ham")  # a model gone from the file loses its route
    assert {s.action: s.outcome for s in result.steps if s.version == "v2"} == {"DELETE": "done"}


def test_a_failed_version_stops_the_apply_before_any_traffic_moves_to_it(routes: RouteStore) -> None:
    target = RecordingTarget()
    apply_file(V1_ONLY, EMPTY, target, routes)
    target.fail.add(("mail", "spam", "v2"))
    result = apply_file(CANARY, V1_ONLY, target, routes)
    assert not result.ok
    assert result.error is not None
    assert "mail/spam version v2" in result.error
    assert "never became ready" in result.error
    assert weights(routes) == {"v1": 100}  # the canary never got a weight
    outcomes = {(s.model, s.version): s.outcome for s in result.steps}
    assert outcomes[("spam", "v2")] == "failed"
    assert outcomes[("spam", "v3")] == "skipped"  # after the failure nothing more happens
    assert ("mail", "spam", "v3") not in target.running


def test_a_mirror_flag_is_cleared_when_the_file_drops_it(routes: RouteStore) -> None:
    target = RecordingTarget()
    apply_file(CANARY, EMPTY, target, routes)
    no_mirror = deploy(
        "deployments:\n- project: mail\n  model: spam\n  versions:\n"
        "  - {version: v1, spec: {uri: spam@production, replicas: 2, weight: 80}}\n"
        "  - {version: v2, spec: {uri: spam/7, weight: 20, batching: {max_batch_size: 32}}}\n"
        "  - {version: v3, spec: {uri: spam/8}}\n"
        "- project: mail\n  model: ham\n  versions:\n  - {version: v1, spec: {uri: ham/1, weight: 1}}\n"
    )
    assert apply_file(no_mirror, CANARY, target, routes).ok
    v3 = routes.get("mail", "spam").version("v3")
    assert v3 is not None
    assert not v3.mirror


def test_targets_see_specs_without_traffic_fields_and_runtime_changes_roll(routes: RouteStore) -> None:
    target = RecordingTarget()
    apply_file(CANARY, EMPTY, target, routes)
    assert all(spec.weight == 0 and spec.mirror is False for spec in target.running.values())
    bigger = deploy(
        "deployments:\n- project: mail\n  model: ham\n  versions:\n"
        "  - {version: v1, spec: {uri: ham/1, weight: 1, replicas: 3}}\n"
    )
    target.calls.clear()
    result = apply_file(bigger, CANARY, target, routes)
    assert result.ok, result.error
    assert ("ensure", ("mail", "ham", "v1")) in target.calls
    assert target.running[("mail", "ham", "v1")].replicas == 3
