"""The package commands: build, verify, dockerfile, import-mlflow (in-process), and serving a package
through the real ``modelyard serve`` (a subprocess)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.package import package_digest, read_manifest
from tests.cli import test_serve_cli as serve_cli
from tests.cli.test_serve_cli import flat, infer, outputs_by_name, serving
from tests.package.conftest import FIXED_TIME, author_dir, onnx_dir
from tests.package.test_archive import contents, write
from tests.package.test_mlflow import sklearn_mlflow

runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_build_then_verify(tmp_path: Path) -> None:
    source = author_dir(tmp_path / "src")
    code, out, err = cli(
        "build", str(source), "-o", str(tmp_path / "dist"), "--name", "cli-model", "--version", "9",
        "--label", "team=ml", "-r", "six==1.17.0", "--author", "lin", "--created-at", FIXED_TIME,
    )  # fmt: skip
    assert code == 0, err
    package = tmp_path / "dist" / "cli-model-9.modelyard"
    assert out.strip() == f"{package}  sha256:{package_digest(package)}"
    manifest = read_manifest(package)
    assert (manifest.labels, manifest.requirements, manifest.author) == (
        {"team": "ml"},
        ["six==1.17.0"],
        "lin",
    )

    code, out, err = cli("verify", str(package))
    assert code == 0, err
    assert "cli-model version 9" in out


def test_verify_names_the_altered_file_and_exits_non_zero(tmp_path: Path) -> None:
    from modelyard.package import build_package

    package = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    members = [(n, d + b"!" if n == "files/scorer.onnx" else d) for n, d in contents(package)]
    code, out, err = cli("verify", str(write(tmp_path / "bad.modelyard", members)))
    assert code == 1
    assert "scorer.onnx" in err
    assert "altered" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["build", "{tmp}/nowhere"], "nowhere"),
        (["build", "{tmp}/m", "--name", "bad name"], "name"),
        (["build", "{tmp}/m", "--label", "novalue"], "--label"),
        (["verify", "{tmp}/missing.modelyard"], "missing.modelyard"),
        (["dockerfile", "{tmp}/missing.modelyard", "-o", "{tmp}/ctx"], "missing.modelyard"),
        (["import-mlflow", "{tmp}/m"], "MLmodel"),
    ],
    ids=["missing-dir", "bad-name", "bad-label", "verify-missing", "dockerfile-missing", "not-mlflow"],
)
def test_user_mistakes_exit_non_zero_with_one_clear_line(tmp_path: Path, args: list[str], named: str) -> None:
    onnx_dir(tmp_path / "m")
    code, out, err = cli(*(arg.format(tmp=tmp_path) for arg in args))
    assert code != 0
    assert named in flat(err + out)
    assert "Traceback" not in err + out


def test_dockerfile_and_import_mlflow_commands(tmp_path: Path) -> None:
    code, out, err = cli(
        "import-mlflow", str(sklearn_mlflow(tmp_path / "housing")), "-o", str(tmp_path), "--version", "2"
    )
    assert code == 0, err
    package = tmp_path / "housing-2.modelyard"
    assert out.startswith(f"{package}  sha256:")
    assert read_manifest(package).runtime == "sklearn"
    code, _, err = cli("dockerfile", str(package), "-o", str(tmp_path / "ctx"))
    assert code == 0, err
    assert re.search(
        r"ENTRYPOINT \[\"modelyard\", \"serve\", \"/models/housing-2.modelyard\"",
        (tmp_path / "ctx" / "Dockerfile").read_text(),
    )


@pytest.mark.slow
def test_modelyard_serve_serves_a_package_next_to_a_plain_file(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.package import build_package

    monkeypatch.setitem(serve_cli.ENV, "MODELYARD_HOME", str(home))  # the subprocess's cache: here

    package = build_package(author_dir(tmp_path / "src"), tmp_path)
    plain = onnx_dir(tmp_path / "plain") / "scorer.onnx"
    x = np.arange(3, dtype=np.float64).reshape(1, 3)
    with serving([str(package), str(plain)], tmp_path) as (server, client):
        y = outputs_by_name(infer(client, "/v2/models/scaler/versions/4/infer", "x", x, "FP64"))["y"]
        np.testing.assert_allclose(y["data"], [0.0, 2.0, 6.0])
        assert client.get("/v2/models/scorer").status_code == 200
        assert server.stop() == 0, server.stderr()
    assert len(list((home / "packages").iterdir())) == 1
