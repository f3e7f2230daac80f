"""From staging to production on evidence, through the CLI: ``validate`` records its verdict on the
registry version, ``registry show`` lists it, ``registry alias --require-validation`` reads it. On
the local database, and against a control plane over REST."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from tests.support import serve_in_thread
from tests.validation.conftest import features, linear


def _run(env: dict[str, str], *args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(map(str, args)), env=env)
    return result.exit_code, result.output


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    np.savez(tmp_path / "rows.npz", x=features(200))
    return {
        "base": linear(tmp_path / "base.onnx"),
        "flip": linear(tmp_path / "flip.onnx", sign=-1.0),
        "good": linear(tmp_path / "good.onnx", note="retrained"),
        "rows": tmp_path / "rows.npz",
    }


def _staging_to_production(env: dict[str, str], models: dict[str, Path], *remote: str) -> None:
    for model, alias in (("base", "production"), ("flip", "staging"), ("good", "candidate")):
        code, output = _run(
            env, "registry", "push", models[model], "--name", "spam", "--alias", alias, *remote
        )
        assert code == 0, output
    rows = models["rows"]

    code, output = _run(
        env, "validate", "spam@staging", "--baseline", "spam@production", "--data", rows, *remote
    )
    assert code == 1, output
    assert "recorded the verdict (fail) on spam/2" in output
    code, output = _run(env, "registry", "alias", "spam", "production", "2", "--require-validation", *remote)
    assert code == 1
    assert "did not pass its latest validation: fail against spam@production (spam/1)" in output

    code, output = _run(env, "registry", "alias", "spam", "production", "3", "--require-validation", *remote)
    assert code == 1
    assert "has no validation verdict" in output
    code, output = _run(
        env, "validate", "spam/3", "--baseline", "spam@production", "--data", rows, "--no-record", *remote
    )
    assert code == 0, output
    assert "recorded" not in output
    code, output = _run(env, "validate", "spam/3", "--baseline", "spam@production", "--data", rows, *remote)
    assert code == 0, output
    assert "recorded the verdict (pass) on spam/3" in output

    code, output = _run(env, "registry", "show", "spam/3", *remote)
    assert code == 0, output
    assert "validations (newest first)" in output
    assert "spam@production (spam/1)" in output
    code, output = _run(env, "registry", "alias", "spam", "production", "3", "--require-validation", *remote)
    assert (code, output.strip()) == (0, "spam@production -> 3 (revision 2)")


def test_on_the_local_database(cli_env: dict[str, str], models: dict[str, Path]) -> None:
    _staging_to_production(cli_env, models)
    with Registry(ControlSettings(home=Path(cli_env["MODELYARD_HOME"]))) as registry:
        verdicts = registry.list_validations("spam", 3)
    assert [v.outcome for v in verdicts] == ["pass"]
    assert verdicts[0].rows == 200
    assert verdicts[0].dataset.endswith("rows.npz")
    assert [g.gate for g in verdicts[0].gates] == ["min_rows", "min_agreement", "max_error_rate"]


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[str, Registry]]:
    settings = ControlSettings(home=tmp_path / "server")
    with Registry(settings) as registry, serve_in_thread(build_control_app(settings, registry)) as address:
        yield f"http://{address}", registry


def test_against_a_control_plane(
    cli_env: dict[str, str], models: dict[str, Path], control_plane: tuple[str, Registry]
) -> None:
    url, registry = control_plane
    _staging_to_production(cli_env, models, "--control-url", url)
    assert [v.outcome for v in registry.list_validations("spam", 2)] == ["fail"]
    assert registry.get_alias("spam", "production").version == 3
    assert not (Path(cli_env["MODELYARD_HOME"]) / "registry.db").exists()  # nothing went to a local one
