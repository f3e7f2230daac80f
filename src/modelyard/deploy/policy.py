"""What a deploy file may ask of this control plane beyond being valid: ``DeployPolicy``.

A deploy file is run by the control plane's own user (the local target) or in its cluster, so two
things in it are refused unless an admin allowed them when starting the control plane:

- a ``uri`` that is not a registry reference (``name@alias``, ``name/3``, ``name/latest``): any other
  ``uri`` is a path on the host, and every kind of model file there runs code or may (a ``.py``
  source, a ``.modelyard`` package's ``load()``, a pickled scikit-learn or torch model); only
  ``modelyard up --allow-local-paths`` lets a file name one. Through the registry, what runs is
  what a deployer pushed, verified by its checksum.
- ``server.env`` variables that steer the interpreter, the dynamic loader, a library that loads
  shared objects or a shell rather than the model (``DENIED_ENV``): ``PYTHONWARNINGS`` plus
  ``BROWSER`` alone runs a shell command when Python starts, ``OPENSSL_CONF`` loads an engine.
  Also modelyard's own credentials and control variables (``MODELYARD_*``), but for the ones that
  say where the control plane and registry are (``LOCATION_ENV``): a pod on Kubernetes is told
  ``MODELYARD_CONTROL_URL`` this way, and the local target overwrites them all anyway.
  ``modelyard up --allow-env NAME`` allows one by its exact name.

The check runs on every file before anything is planned or started (``diff``, ``apply`` and a
rollback's file alike), and its errors name the field and its line like any other (``deploy/file.py``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path

from modelyard.control.settings import ControlSettings
from modelyard.deploy.spec import DeployFile

__all__ = ["DENIED_ENV", "LOCATION_ENV", "DeployPolicy", "denied_env", "is_registry_reference"]

# Environment variables a deploy file may not set unless allowed (case-insensitive glob patterns).
DENIED_ENV: tuple[str, ...] = (
    "PYTHON*",  # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONHOME, PYTHONUSERBASE, ...
    "LD_*",  # LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH: the dynamic loader
    "DYLD_*",  # the same on macOS
    "BROWSER",  # webbrowser runs it: with PYTHONWARNINGS, a command at interpreter start
    "PATH",  # which programs run
    "HOME",  # user site-packages (their .pth files run code), dotfiles
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS",  # shells
    "PERL5OPT", "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB",  # other interpreters a model may start
    "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
    "PIP_*", "UV_*", "GIT_*",  # package installs: where from, and what runs on the way
    # Libraries that load shared objects or parse files the variable names:
    "OPENSSL_*",  # OPENSSL_CONF (its engines and providers are .so files), OPENSSL_ENGINES, _MODULES
    "GCONV_PATH",  # glibc's iconv loads gconv modules (.so) from here
    "OMP_TOOL_LIBRARIES",  # OpenMP runtimes (libgomp, libomp) load these as tools at start
    "LOCPATH", "NLSPATH",  # glibc locale data and message catalogues (format strings) from a path
    # Name resolution: where a replica's calls to the control plane, token and all, really go.
    "HOSTALIASES", "RESOLV_HOST_CONF", "LOCALDOMAIN", "RES_OPTIONS",
    # modelyard's own: MODELYARD_TOKEN, MODELYARD_API_KEY, MODELYARD_MODEL_CONTROL_TOKEN, the
    # lifeline's MODELYARD_PARENT_PID and whatever comes next (but LOCATION_ENV, below).
    "MODELYARD_*",
)  # fmt: skip
# Not listed on purpose: OMP_TOOL (only turns the tool interface on or off), MALLOC_CONF (jemalloc
# tuning, a common need of model servers; it loads nothing), TMPDIR.

# The MODELYARD_* variables a deploy file may set: where the control plane and the registry are. A
# Kubernetes pod resolves ``name@alias`` through them; the local target overwrites every one last.
LOCATION_ENV: frozenset[str] = frozenset(
    {"MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_URL", "MODELYARD_HOME", "MODELYARD_REGISTRY_DB",
     "MODELYARD_ARTIFACTS"}
)  # fmt: skip

# The registry's reference grammar (registry/refs.py), restated so the deploy plane does not import
# the registry: a name, then "@alias" or "/version" ("latest" or 1 to 999999999). A bare name is a
# path to `modelyard serve`, never a reference.
_REFERENCE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(@(?P<alias>[a-z][a-z0-9_-]{0,62})|/(?P<version>latest|[0-9]{1,9}))"
)


def is_registry_reference(uri: str) -> bool:
    """Whether ``modelyard serve`` reads ``uri`` as a registry reference rather than a path: it has
    the reference's form and names no file here (serve prefers a file that exists)."""
    found = _REFERENCE.fullmatch(uri)
    if found is None or found["alias"] == "latest":
        return False
    if found["version"] not in (None, "latest") and int(found["version"]) < 1:
        return False
    return not Path(uri).exists()


@dataclasses.dataclass(frozen=True)
class DeployPolicy:
    """What this control plane lets a deploy file do. The default allows neither local paths nor
    any ``DENIED_ENV`` variable."""

    allow_local_paths: bool = False
    allowed_env: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> DeployPolicy:
        return cls(settings.allow_local_paths, frozenset(settings.allowed_env))

    def problems(self, desired: DeployFile) -> list[tuple[tuple[str | int, ...], str]]:
        """Every field of ``desired`` this policy refuses, with why."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for d, deployment in enumerate(desired.deployments):
            for v, version in enumerate(deployment.versions):
                at: tuple[str | int, ...] = ("deployments", d, "versions", v, "spec")
                uri = version.spec.uri
                if not self.allow_local_paths and not is_registry_reference(uri):
                    found.append(((*at, "uri"), _local_path(uri)))
                for name in version.spec.server.env:
                    if name not in self.allowed_env and denied_env(name):
                        found.append(((*at, "server", "env", name), _env(name)))
        return found


def denied_env(name: str) -> bool:
    """Whether ``name`` is one of ``DENIED_ENV`` (compared in upper case: some tools read both) and
    not, by its exact name, one of ``LOCATION_ENV``."""
    if name in LOCATION_ENV:
        return False
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in DENIED_ENV)


def _local_path(uri: str) -> str:
    hint = ""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", uri):
        hint = f" (a bare name is a file to `modelyard serve`: write {uri}/latest for the registry's latest)"
    return (
        f"uri {uri!r} is not a registry reference (name@alias, name/3){hint}: a path to model code on"
        " this host is refused unless the control plane runs with --allow-local-paths; push the"
        " model to the registry and deploy it by reference"
    )


def _env(name: str) -> str:
    what = "steers the replica's interpreter, loader or shell, not the model"
    if name.upper().startswith("MODELYARD_"):
        what = "is a modelyard credential or control variable, not the model's"
    return f"{name} {what}: a deploy file may set it only when the control plane runs with --allow-env {name}"
