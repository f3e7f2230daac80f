"""What a local replica's process is given as its environment (``LocalTarget._environment``): the
operator's credentials stay out of model code's reach, but for the token a replica announcing over
REST needs to heart-beat."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.deploy.spec import VersionSpec
from modelyard.deploy.targets.local import LocalTarget

SPEC = VersionSpec.model_validate({"uri": "spam@production", "weight": 1, "server": {"env": {"TZ": "UTC"}}})


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TOKEN", "mdy_operator_secret")
    monkeypatch.setenv("MODELYARD_API_KEY", "mdk_operator_key")
    monkeypatch.setenv("MODELYARD_TEST_INHERITED", "yes")


@pytest.fixture
def control(tmp_path: Path) -> ControlSettings:
    return ControlSettings(home=tmp_path / "home")


def test_announcing_into_the_database_a_replica_gets_no_credential(control: ControlSettings) -> None:
    with LocalTarget(control) as local:
        env = local._environment(SPEC)
    assert "MODELYARD_TOKEN" not in env
    assert "MODELYARD_API_KEY" not in env
    assert (env["MODELYARD_TEST_INHERITED"], env["TZ"]) == ("yes", "UTC")
    assert env["MODELYARD_HOME"] == str(control.home)


def test_announcing_over_rest_a_replica_gets_the_token_to_heart_beat_with(control: ControlSettings) -> None:
    with LocalTarget(control, control_url="http://127.0.0.1:9") as remote:
        env = remote._environment(SPEC)
    assert env["MODELYARD_TOKEN"] == "mdy_operator_secret"
    assert env["MODELYARD_CONTROL_URL"] == "http://127.0.0.1:9"
    assert "MODELYARD_API_KEY" not in env  # inference keys are never a replica's business


def test_a_token_given_on_purpose_still_reaches_the_replica(control: ControlSettings) -> None:
    # home_env is the operator's code; server.env carries one only where an admin allowed it.
    spec = SPEC.model_copy(
        update={"server": SPEC.server.model_copy(update={"env": {"MODELYARD_TOKEN": "viewer"}})}
    )
    with LocalTarget(control, home_env={"MODELYARD_API_KEY": "mine"}) as local:
        env = local._environment(spec)
    assert (env["MODELYARD_TOKEN"], env["MODELYARD_API_KEY"]) == ("viewer", "mine")
