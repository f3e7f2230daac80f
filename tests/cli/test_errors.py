"""``modelyard serve``: what the user can fix is one line and exit code 2; a bug keeps its traceback.

In-process, ``modelyard.server.serve.run`` is replaced by one that only builds the app (where the model
paths are resolved): the real one would bind a port and configure logging for the whole test run.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import modelyard.server.serve
from modelyard.server import Settings
from modelyard.server.app import build_app
from tests.cli.test_serve_cli import flat
from tests.support import linear_onnx

AUTHOR_FILE = """
import modelyard

@modelyard.model(name="m", inputs=[modelyard.TensorSpec("x", "FP32", [-1])])
class Model:
    def predict(self, inputs):
        return inputs
"""


def serve(*args: str) -> Any:
    from modelyard.cli.main import app

    return CliRunner().invoke(app, ["serve", *args])


@pytest.fixture
def build_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(settings: Settings, **_: Any) -> None:
        build_app(settings)

    monkeypatch.setattr(modelyard.server.serve, "run", run)


def failing_run(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def run(settings: Settings, **_: Any) -> None:
        raise error

    monkeypatch.setattr(modelyard.server.serve, "run", run)


@pytest.mark.usefixtures("build_only")
@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("{tmp}/nowhere/missing.onnx", "model file not found: {tmp}/nowhere/missing.onnx"),
        ("{tmp}/weights.txt", "cannot tell the format of '{tmp}/weights.txt'"),
        ("{tmp}/author.py:Missing", "author.py has no attribute 'Missing'"),
        ("{tmp}/author.py:modelyard", "is neither a @model spec nor a class"),
        ("{tmp}/absent.py:Model", "model source not found: {tmp}/absent.py"),
        ("{tmp}/absent.modelyard", "model package not found: {tmp}/absent.modelyard"),
    ],
    ids=[
        "missing-file",
        "unknown-format",
        "no-such-class",
        "not-a-class",
        "missing-source",
        "missing-package",
    ],
)
def test_a_user_mistake_is_one_line_and_exit_2(tmp_path: Path, target: str, named: str) -> None:
    (tmp_path / "weights.txt").write_text("not a model")
    (tmp_path / "author.py").write_text(AUTHOR_FILE)
    result = serve(target.format(tmp=tmp_path))
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert named.format(tmp=tmp_path) in flat(result.stderr)
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("build_only")
def test_the_same_model_twice_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        linear_onnx(tmp_path / folder / "scorer.onnx")
    result = serve(str(tmp_path / "a" / "scorer.onnx"), str(tmp_path / "b" / "scorer.onnx"))
    assert result.exit_code == 2, result.output
    assert "model 'scorer' version '1' is already served" in flat(result.stderr)


def test_the_system_refusing_a_named_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_run(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/models/m.onnx"))
    (tmp_path / "m.onnx").write_bytes(b"")
    result = serve(str(tmp_path / "m.onnx"))
    assert result.exit_code == 2, result.output
    assert flat(result.stderr) == "modelyard: Permission denied: /models/m.onnx"


@pytest.mark.parametrize(
    "bug",
    [
        TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'x'"),
        ValueError("x"),
    ],
    ids=["TypeError", "AttributeError", "ValueError"],
)
def test_a_bug_propagates_instead_of_posing_as_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: Exception
) -> None:
    failing_run(monkeypatch, bug)
    (tmp_path / "m.onnx").write_bytes(b"")
    result = serve(str(tmp_path / "m.onnx"))
    assert result.exception is bug
    assert result.exit_code == 1
    assert "modelyard: " not in result.stderr


@pytest.mark.slow
def test_a_bug_prints_its_traceback_from_the_real_command(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    launcher = (
        "import modelyard.server.serve\n"
        "def run(settings, **kwargs):\n"
        "    raise TypeError('a bug in modelyard')\n"
        "modelyard.server.serve.run = run\n"
        "from modelyard.cli.main import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", launcher, "serve", str(tmp_path / "m.onnx")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "TypeError: a bug in modelyard" in result.stderr


@pytest.mark.usefixtures("build_only")
def test_announcing_from_every_address_needs_announce_url(tmp_path: Path) -> None:
    linear_onnx(tmp_path / "scorer.onnx")
    result = serve(str(tmp_path / "scorer.onnx"), "--host", "0.0.0.0", "--announce", "shop/scorer/1")
    assert result.exit_code == 2, result.output
    assert "--announce-url" in flat(result.stderr)
    assert "serving on every address" in flat(result.stderr)
