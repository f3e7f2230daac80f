"""``modelyard dockerfile``: the build context's files and what the Dockerfile promises (no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelyard import __version__
from modelyard.errors import PackageInvalid
from modelyard.package import build_package, read_manifest
from modelyard.package.docker import write_build_context
from tests.package.conftest import onnx_dir, sklearn_dir
from tests.package.test_archive import contents, write


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def test_the_context_serves_the_verified_package_as_a_non_root_user(tmp_path: Path) -> None:
    package = build_package(
        sklearn_dir(tmp_path / "reg"), tmp_path, version="2", requirements=["six==1.17.0"]
    )
    out = write_build_context(package, tmp_path / "ctx")
    assert sorted(p.name for p in out.iterdir()) == [
        ".dockerignore",
        "Dockerfile",
        "reg-2.modelyard",
        "requirements.txt",
    ]
    assert (out / "reg-2.modelyard").read_bytes() == package.read_bytes()
    assert (out / "requirements.txt").read_text().splitlines() == [
        f"modelyard[sklearn]=={__version__}",
        "six==1.17.0",
    ]

    steps = instructions((out / "Dockerfile").read_text())
    python = read_manifest(package).framework["python"].rsplit(".", 1)[0]
    assert steps[0] == ("FROM", f"python:{python}-slim")
    kinds = [kind for kind, _ in steps]
    runs = [args for kind, args in steps if kind == "RUN"]
    assert any("pip install -r /tmp/requirements.txt" in run for run in runs)
    assert "modelyard verify /models/reg-2.modelyard" in runs
    # verified at build time, before the image switches to the unprivileged user that serves
    assert kinds.index("USER") > next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "verify" in a)
    user = dict(steps)["USER"]
    assert user not in ("root", "0")
    assert dict(steps)["EXPOSE"] == "8080"
    health = dict(steps)["HEALTHCHECK"]
    assert "/health/ready" in health
    assert json.loads(health.split("CMD ", 1)[1])[0] == "python"
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry == ["modelyard", "serve", "/models/reg-2.modelyard", "--host", "0.0.0.0", "--port", "8080"]


def test_dockerignore_lets_only_the_context_files_in(tmp_path: Path) -> None:
    out = write_build_context(build_package(onnx_dir(tmp_path / "m"), tmp_path), tmp_path / "ctx")
    assert (out / ".dockerignore").read_text().splitlines()[0] == "*"
    assert "modelyard==" in (out / "requirements.txt").read_text()  # onnxruntime is a core dependency


def test_an_altered_package_gets_no_context(tmp_path: Path) -> None:
    package = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    members = [(n, d + b"x" if n.startswith("files/") else d) for n, d in contents(package)]
    with pytest.raises(PackageInvalid, match="altered"):
        write_build_context(write(tmp_path / "bad.modelyard", members), tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()
