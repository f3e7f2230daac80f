"""The rollout block of a deploy file: what it accepts, and errors that name the line and field."""

from __future__ import annotations

import pytest

from modelyard.deploy.file import DeployFileError, load_deploy_file
from tests.rollout.support import CANARY, deploy_file


def _error(text: str) -> str:
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    return str(caught.value)


def test_the_issue_example_loads_with_durations_in_seconds() -> None:
    version = load_deploy_file(deploy_file(CANARY), "deploy.yaml").deployments[0].versions[1]
    assert version.spec.rollout is not None
    steps = version.spec.rollout.steps
    assert [(s.mirror, s.weight, s.duration) for s in steps][:2] == [(1.0, None, 10.0), (None, 5, 10.0)]


@pytest.mark.parametrize(
    ("duration", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1.5h", 5400.0), ("7", 7.0)]
)
def test_durations(duration: str, seconds: float) -> None:
    rollout = f"{{baseline: v1, steps: [{{weight: 5, for: {duration}}}], gates: {{max_error_rate: 0.1}}}}"
    spec = load_deploy_file(deploy_file(rollout), "d").deployments[0].versions[1].spec.rollout
    assert spec is not None
    assert spec.steps[0].duration == seconds


def _r(steps: str, gates: str = "{max_error_rate: 0.1}", *, baseline: str = "v1", more: str = "") -> str:
    return f"{{baseline: {baseline}, steps: [{steps}], gates: {gates}{more}}}"


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        (_r("{weight: 5, for: 2x}"), "'2x' is not a duration"),
        (_r("{weight: 5, for: 0s}"), "greater than 0"),
        (_r("{weight: 5, mirror: 1, for: 1s}"), "not both"),
        (_r("{weight: 100, for: 1s}"), "less than or equal to 99"),
        (_r(""), "at least 1 item"),
        (_r("{weight: 5, for: 1s}", "{min_requests: 5}"), "at least one gate"),
        (_r("{weight: 5, for: 1s}", baseline="v9"), "baseline 'v9' must be"),
        (_r("{weight: 5, for: 1s}", baseline="v2"), "baseline 'v2' must be"),
        (_r("{weight: 5, for: 1s}", more=", strategy: blue-green"), "blue-green moves all traffic at once"),
    ],
)
def test_a_bad_rollout_is_refused_naming_its_field(rollout: str, message: str) -> None:
    error = _error(deploy_file(rollout))
    assert "deploy.yaml:" in error
    assert "rollout" in error
    assert message in error


def test_the_candidate_may_not_carry_its_own_weight() -> None:
    text = deploy_file(CANARY).replace("uri: spam/2\n", "uri: spam/2\n      weight: 10\n")
    assert "leave weight and mirror out" in _error(text)


def test_only_one_version_rolls_out_at_a_time() -> None:
    third = f"  - version: v3\n    spec:\n      uri: spam/3\n      rollout: {CANARY}\n"
    text = deploy_file(CANARY) + third
    assert "only one version may roll out at a time" in _error(text)
