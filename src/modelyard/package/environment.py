"""``serve --isolated``: run packages in a virtual environment built from their pinned requirements.

Design (docs/packages.md, "Isolated environments"): the venv is created with
``--system-site-packages`` and a ``.pth`` file that adds this environment's site-packages too, so
modelyard and its own dependencies (numpy, onnxruntime, uvicorn...) come from the environment
that runs ``modelyard``; only the packages' pinned requirements are ``pip install``-ed into the
venv, where they come first on ``sys.path`` and shadow the base versions. The trade-off: installs
are small and fast, but a requirement that conflicts with modelyard's own dependencies can break
modelyard inside the venv, and a package cannot downgrade Python itself.

Environments are cached under ``<home>/envs/<key>``, the key a hash of (requirements, Python
version, base environment). Each is built in a temporary folder and renamed into place when
complete, so a failed or interrupted build is never reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from modelyard.errors import ErrorKind, ModelyardError, PackageInvalid
from modelyard.package.cache import modelyard_home, unpack_cached
from modelyard.package.manifest import PACKAGE_SUFFIX
from modelyard.package.requirements import requirement_name
from modelyard.server.settings import ModelConfig, Settings

__all__ = [
    "EnvironmentBuildError",
    "ensure_environment",
    "environment_key",
    "environment_python",
    "isolated_command",
    "isolated_requirements",
    "main",
    "serve_isolated",
]

_PIP_TIMEOUT_S = 900.0


class EnvironmentBuildError(ModelyardError):
    """pip could not install a package's requirements (network, a version that does not exist...)."""

    kind = ErrorKind.INTERNAL


def environment_key(requirements: Sequence[str]) -> str:
    """The cache key of an environment: requirements, Python version and the base environment."""
    identity = {
        "requirements": sorted(requirements),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "base": sys.prefix,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def environment_python(env: Path) -> Path:
    """The interpreter of a venv made by :func:`ensure_environment`."""
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def isolated_requirements(settings: Settings, home: Path | None = None) -> list[str]:
    """The union of the requirements of every package in ``settings``; conflicting pins are refused."""
    chosen: dict[str, tuple[str, str]] = {}
    for model in settings.models:
        if not model.path.endswith(PACKAGE_SUFFIX):
            continue
        manifest = unpack_cached(Path(model.path), home).manifest  # verified before pip sees a name
        for requirement in manifest.requirements:
            name = requirement_name(requirement.partition(";")[0].partition("==")[0])
            if name in chosen and chosen[name][0] != requirement:
                raise PackageInvalid(
                    f"{model.path} requires {requirement} but {chosen[name][1]} requires {chosen[name][0]};"
                    " serve them in separate processes",
                    field="requirements",
                )
            chosen[name] = (requirement, model.path)
    return sorted(requirement for requirement, _ in chosen.values())


def _site_packages_pth() -> str:
    """A ``.pth`` body that puts this environment's site-packages after the venv's own."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    lines = [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(paths)]
    return "\n".join(lines) + "\n"


def _create(staging: Path, requirements: Sequence[str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(staging)],
        check=True,
        capture_output=True,
    )
    python = environment_python(staging)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_modelyard_base.pth").write_text(_site_packages_pth())
    if not requirements:
        return
    # pip of this environment installs into the venv (--python), so the venv needs no pip of its own.
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input", *requirements]
    result = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise EnvironmentBuildError(
            f"pip could not install {' '.join(requirements)}:\n{tail}", field="requirements"
        )


def ensure_environment(requirements: Sequence[str], home: Path | None = None) -> Path:
    """The venv for these pinned requirements, built (atomically) only the first time."""
    envs = (home or modelyard_home()) / "envs"
    final = envs / environment_key(requirements)
    if environment_python(final).exists():
        return final
    envs.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=envs, prefix=f".{final.name}.partial-"))
    try:
        _create(staging, requirements)
        staging.rename(final)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not environment_python(final).exists():  # not "another process finished first"
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def isolated_command(settings: Settings, home: Path | None = None) -> list[str]:
    """Build (or reuse) the environment for ``settings`` and return the command that serves them in it.

    The settings travel as a JSON config file named by their hash under ``<home>/run/``, so
    nothing needs cleaning up after the server (which replaces this process) exits.
    """
    home = home or modelyard_home()
    env = ensure_environment(isolated_requirements(settings, home), home)
    text = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
    config = home / "run" / f"serve-{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = config.with_name(f".{config.name}.{os.getpid()}")
    # Owner-only: the settings may hold the model-control token.
    with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)
    staging.replace(config)
    # Not `-m modelyard.cli.main`: modelyard.cli imports main first, and runpy warns about that.
    launcher = "import sys; from modelyard.cli.main import main; sys.argv[0] = 'modelyard'; main()"
    return [str(environment_python(env)), "-c", launcher, "serve", "--config", str(config)]


def serve_isolated(settings: Settings, home: Path | None = None) -> NoReturn:
    """What ``modelyard serve --isolated`` runs: replace this process with the server in the venv.

    ``os.execv`` rather than a child process: signals (SIGTERM drains), the exit code and the pid
    are the server's own, and nothing is left behind if this process is killed. Errors building
    the environment are one line on stderr and exit code 2.
    """
    try:
        command = isolated_command(settings, home)
    except (ModelyardError, OSError, subprocess.SubprocessError) as exc:
        message = exc.message if isinstance(exc, ModelyardError) else str(exc)
        print(f"modelyard: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ["MODELYARD_HOME"] = str(home or modelyard_home())
    os.execv(command[0], command)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m modelyard.package.environment PACKAGE... [--host] [--port] [--log-level]``."""
    parser = argparse.ArgumentParser(prog="python -m modelyard.package.environment")
    parser.add_argument("paths", nargs="+", help="packages (and model files) to serve together")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    models = [ModelConfig(path=path).model_dump() for path in args.paths]
    fields = {"host": args.host, "port": args.port, "log_level": args.log_level, "models": models}
    serve_isolated(Settings.model_validate(fields))


if __name__ == "__main__":
    main()
