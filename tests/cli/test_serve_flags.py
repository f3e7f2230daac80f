"""``modelyard serve`` flags that become settings, checked in-process (the server itself is not run)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import modelyard.server.serve
from modelyard.cli.main import app
from modelyard.server import Settings


def test_health_flags_set_the_poll_interval_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr(modelyard.server.serve, "run", lambda settings, **_: served.append(settings))
    args = ["serve", "model.py:Model", "--health-interval", "0.5", "--health-timeout", "0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [settings] = served
    assert (settings.health_interval_s, settings.health_timeout_s) == (0.5, 0.25)


def test_without_the_flags_the_defaults_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr(modelyard.server.serve, "run", lambda settings, **_: served.append(settings))
    assert CliRunner().invoke(app, ["serve", "model.py:Model"]).exit_code == 0
    assert (served[0].health_interval_s, served[0].health_timeout_s) == (5.0, 2.0)


@pytest.mark.parametrize(
    ("flag", "field"), [("--health-interval", "health_interval_s"), ("--health-timeout", "health_timeout_s")]
)
def test_a_non_positive_health_setting_is_refused_naming_it(
    flag: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(modelyard.server.serve, "run", lambda *args, **kwargs: calls.append(args))
    result = CliRunner().invoke(app, ["serve", "model.py:Model", flag, "0"])
    assert result.exit_code == 2
    assert field in result.output
    assert calls == []
