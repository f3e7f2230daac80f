"""``modelyard dockerfile``: the build context's files and what the Dockerfile promises (no Docker needed)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

import modelyard
from modelyard import __version__
from modelyard.errors import PackageInvalid
from modelyard.package import build_package, read_manifest
from modelyard.package.docker import build_modelyard_wheel, write_build_context
from tests.package.conftest import onnx_dir, sklearn_dir
from tests.package.test_archive import contents, write

WHEEL = f"modelyard-{__version__}-py3-none-any.whl"


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
        "wheels",
    ]
    assert (out / "reg-2.modelyard").read_bytes() == package.read_bytes()
    assert (out / "requirements.txt").read_text().splitlines() == [
        f"./wheels/{WHEEL}[sklearn]",
        "six==1.17.0",
    ]

    steps = instructions((out / "Dockerfile").read_text())
    python = read_manifest(package).framework["python"].rsplit(".", 1)[0]
    assert steps[0] == ("FROM", f"python:{python}-slim")
    kinds = [kind for kind, _ in steps]
    runs = [args for kind, args in steps if kind == "RUN"]
    assert any("cd /tmp/context && pip install -r requirements.txt" in run for run in runs)
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
    # onnxruntime is a core dependency: no extra
    assert (out / "requirements.txt").read_text().splitlines() == [f"./wheels/{WHEEL}"]


def test_an_altered_package_gets_no_context(tmp_path: Path) -> None:
    package = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    members = [(n, d + b"x" if n.startswith("files/") else d) for n, d in contents(package)]
    with pytest.raises(PackageInvalid, match="altered"):
        write_build_context(write(tmp_path / "bad.modelyard", members), tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()


def copies(dockerfile: str) -> list[str]:
    """The context paths the Dockerfile's COPY instructions read (flags such as --chown dropped)."""
    sources = []
    for kind, args in instructions(dockerfile):
        if kind == "COPY":
            words = [word for word in args.split() if not word.startswith("--")]
            sources += words[:-1]
    return sources


def test_every_copied_file_is_in_the_context_and_let_in(tmp_path: Path) -> None:
    out = write_build_context(build_package(onnx_dir(tmp_path / "m"), tmp_path), tmp_path / "ctx")
    sources = copies((out / "Dockerfile").read_text())
    assert f"wheels/{WHEEL}" in sources
    assert [p.name for p in (out / "wheels").iterdir()] == [WHEEL]
    let_in = {line[1:] for line in (out / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for source in sources:
        assert (out / source).is_file(), source
        assert source in let_in, source
    # what requirements.txt installs (relative to the context's root) is what the Dockerfile copies
    assert (out / "requirements.txt").read_text().splitlines()[0] == f"./wheels/{WHEEL}"


def test_a_second_run_replaces_an_earlier_wheel(tmp_path: Path) -> None:
    package = build_package(onnx_dir(tmp_path / "m"), tmp_path)
    (tmp_path / "ctx" / "wheels").mkdir(parents=True)
    (tmp_path / "ctx" / "wheels" / "modelyard-0.0.1-py3-none-any.whl").write_bytes(b"old")
    first = (write_build_context(package, tmp_path / "ctx") / "wheels" / WHEEL).read_bytes()
    second = (write_build_context(package, tmp_path / "ctx") / "wheels" / WHEEL).read_bytes()
    assert [p.name for p in (tmp_path / "ctx" / "wheels").iterdir()] == [WHEEL]
    assert first == second  # deterministic: an unchanged modelyard keeps Docker's layer cache


def test_the_wheel_holds_the_running_modelyard(tmp_path: Path) -> None:
    wheel = build_modelyard_wheel(tmp_path)
    source = Path(modelyard.__file__).parent
    info = f"modelyard-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in source.rglob("*.py"):
            if "__pycache__" not in path.parts:
                member = f"modelyard/{path.relative_to(source).as_posix()}"
                assert archive.read(member) == path.read_bytes(), member
        assert "modelyard/py.typed" in names
        assert not [n for n in names if n.endswith((".so", ".pyc"))]
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"\nVersion: {__version__}\n" in metadata
        assert "Requires-Dist: onnxruntime" in metadata
        assert "modelyard = modelyard.cli.main:main" in archive.read(f"{info}/entry_points.txt").decode()
        assert "Tag: py3-none-any" in archive.read(f"{info}/WHEEL").decode()
        record = archive.read(f"{info}/RECORD").decode().splitlines()
        assert len(record) == len(names)
        for line in record[:-1]:
            member, digest, size = line.rsplit(",", 2)
            data = archive.read(member)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data)), member
        assert record[-1] == f"{info}/RECORD,,"


def _index_reachable() -> bool:
    """Whether pip's package index answers at all (any HTTP status counts)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        urllib.request.urlopen(f"{index}/pip/", timeout=10).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_context_installs_in_a_fresh_venv_the_way_the_dockerfile_does(tmp_path: Path) -> None:
    """What the image's pip step does, without Docker: the context's requirements.txt, from the
    context's root, into an empty venv; then the venv's modelyard verifies the copied package."""
    if not _index_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("the package index is unreachable, and CI=true requires this test")
        pytest.skip("the package index is unreachable (offline)")
    package = build_package(sklearn_dir(tmp_path / "reg"), tmp_path, version="2")
    out = write_build_context(package, tmp_path / "ctx")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "-r", "requirements.txt"]
    done = subprocess.run(install, cwd=out, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = "import modelyard, sklearn; print(modelyard.__version__, modelyard.__file__)"
    version, where = subprocess.run(
        [python, "-c", probe], cwd=out, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert version == __version__
    assert Path(where).is_relative_to(venv)  # the wheel's copy, not this checkout's
    verified = subprocess.run(
        [str(venv / "bin" / "modelyard"), "verify", "reg-2.modelyard"],
        cwd=out, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "reg version 2" in verified.stdout
