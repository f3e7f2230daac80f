"""What a deploy file may ask of this control plane beyond being valid: ``DeployPolicy``.

A deploy file is run by the control plane's own user (the local target) or in its cluster, so two
things in it are refused unless an admin allowed them when starting the control plane:

- a ``uri`` that is not a registry reference (``name@alias``, ``name/3``, ``name/latest``): any other
  ``uri`` is a path on the host, and every kind of model file there runs code or may (a ``.py``
  source, a ``.modelyard`` package's ``load()``, a pickled scikit-learn or torch model); only
  ``modelyard up --allow-local-paths`` lets a file name one. Through the registry, what runs is
  what a deployer pushed, verified by its checksum.
- ``server.env`` variables that steer the interpreter, the dynamic loader or a shell rather than
  the model (``DENIED_ENV``): ``PYTHONWARNINGS`` plus ``BROWSER`` alone runs a shell command when
  Python starts. ``modelyard up --allow-env NAME`` allows one by its exact name.

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

__all__ = ["DENIED_ENV", "DeployPolicy", "denied_env", "is_registry_reference"]

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
    """Whether ``name`` is one of ``DENIED_ENV`` (compared in upper case: some tools read both)."""
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
    return (
        f"{name} steers the replica's interpreter, loader or shell, not the model: a deploy file may"
        f" set it only when the control plane runs with --allow-env {name}"
    )
