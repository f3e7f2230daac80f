"""``modelyard serve --device`` (or ``MODELYARD_DEVICE``, or ``device:`` in the YAML file) becomes the
server's setting; a model's own ``device:`` in the YAML file is that model's. The server is not run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelyard.server.serve
from modelyard.cli.main import app
from modelyard.server import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    runs: list[Settings] = []
    monkeypatch.delenv("MODELYARD_DEVICE", raising=False)
    monkeypatch.setattr(modelyard.server.serve, "run", lambda settings, **_: runs.append(settings))
    return runs


def test_the_flag_sets_the_device_and_the_default_is_cpu(served: list[Settings]) -> None:
    assert CliRunner().invoke(app, ["serve", "model.py:Model"]).exit_code == 0
    result = CliRunner().invoke(app, ["serve", "model.py:Model", "--device", "cuda:1"])
    assert result.exit_code == 0, result.output
    assert [settings.device for settings in served] == ["cpu", "cuda:1"]


def test_the_environment_variable_sets_it_and_the_flag_wins(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_DEVICE", "auto")
    assert CliRunner().invoke(app, ["serve", "model.py:Model"]).exit_code == 0
    assert CliRunner().invoke(app, ["serve", "model.py:Model", "--device", "cpu"]).exit_code == 0
    assert [settings.device for settings in served] == ["auto", "cpu"]


def test_a_model_in_the_yaml_file_has_its_own(served: list[Settings], tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("device: auto\nmodels:\n  - {path: a.onnx, device: cuda:0}\n  - {path: b.onnx}\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [settings] = served
    assert settings.device == "auto"
    assert [model.device for model in settings.models] == ["cuda:0", None]  # None: the server's


def test_an_unknown_device_is_refused_naming_it(served: list[Settings]) -> None:
    result = CliRunner().invoke(app, ["serve", "model.py:Model", "--device", "gpu"])
    assert result.exit_code == 2
    assert "device 'gpu' must be one of cpu, cuda" in " ".join(result.output.split())
    assert served == []
