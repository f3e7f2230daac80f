"""The rollout block of a deploy file: what it accepts, and errors that name the line and field."""

from __future__ import annotations

from typing import get_args

import pytest

from modelyard.deploy.file import DeployFileError, load_deploy_file
from modelyard.deploy.spec import COMPARE_KINDS, CompareKind
from modelyard.rollout.controller import fingerprint
from modelyard.validation.compare import KINDS, Kind
from modelyard.validation.policy import Policy
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


def _rollout(more: str) -> str:
    return _r("{mirror: 1.0, for: 5m}", "{min_agreement: 0.98}", more=more)


def test_the_compare_block_sets_tolerances_and_output_kinds() -> None:
    text = deploy_file(
        _rollout(", compare: {abs_tol: 1.0e-4, rel_tol: 0, outputs: {label: label, y: numeric}}")
    )
    spec = load_deploy_file(text, "d").deployments[0].versions[1].spec.rollout
    assert spec is not None
    assert (spec.compare.abs_tol, spec.compare.rel_tol) == (1e-4, 0)
    assert spec.compare.outputs == {"label": "label", "y": "numeric"}
    assert spec.model_dump()["compare"]["outputs"] == {"label": "label", "y": "numeric"}


def test_without_compare_the_policys_defaults_apply_and_the_spec_dumps_as_before() -> None:
    spec = load_deploy_file(deploy_file(_rollout("")), "d").deployments[0].versions[1].spec.rollout
    assert spec is not None
    defaults = Policy()
    assert (spec.compare.abs_tol, spec.compare.rel_tol) == (defaults.abs_tol, defaults.rel_tol)
    assert spec.compare.outputs == {}
    # A rollout is known by its spec, hashed: one applied before `compare` existed keeps its hash.
    assert "compare" not in spec.model_dump(mode="json", by_alias=True)
    written = load_deploy_file(deploy_file(_rollout(", compare: {}")), "d").deployments[0]
    assert fingerprint(written) == fingerprint(
        load_deploy_file(deploy_file(_rollout("")), "d").deployments[0]
    )


def test_a_changed_compare_block_is_another_rollout() -> None:
    loose = load_deploy_file(deploy_file(_rollout(", compare: {rel_tol: 0.01}")), "d").deployments[0]
    plain = load_deploy_file(deploy_file(_rollout("")), "d").deployments[0]
    assert fingerprint(loose) != fingerprint(plain)


def test_the_kinds_a_file_may_name_are_the_comparisons() -> None:
    # deploy/spec.py restates them (the deploy plane does not import validation): they must agree.
    assert get_args(CompareKind) == get_args(Kind)
    assert COMPARE_KINDS == KINDS == get_args(Kind)


@pytest.mark.parametrize(
    ("compare", "field", "message"),
    [
        ("{abs_tol: -1.0e-6}", "compare.abs_tol", "greater than or equal to 0"),
        ("{rel_tol: -0.1}", "compare.rel_tol", "greater than or equal to 0"),
        ("{rel_tol: .inf}", "compare.rel_tol", "finite number"),
        ("{abs_tol: true}", "compare.abs_tol", "not true"),
        ("{outputs: {y: labels}}", "compare.outputs.y", "'label', 'scores', 'numeric' or 'exact'"),
        ("{tolerance: 0.1}", "compare.tolerance", "expected one of: abs_tol, rel_tol, outputs"),
    ],
)
def test_a_bad_compare_block_is_refused_naming_its_field(compare: str, field: str, message: str) -> None:
    error = _error(deploy_file(_rollout(f", compare: {compare}")))
    assert f"deployments[0].versions[1].spec.rollout.{field}:" in error
    assert message in error
