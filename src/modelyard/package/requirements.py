"""Python requirements of a package, each pinned to one exact version (``name==1.2.3``).

A pinned line is kept as written (name normalised). An unpinned one (``numpy``, ``numpy>=1.26``)
is pinned to the version installed in this environment, so the package records what the author
actually ran; unpinned and not installed is an error that names it.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from pathlib import Path

from modelyard.errors import PackageInvalid
from modelyard.package.manifest import check_requirement

__all__ = ["parse_requirements_file", "pin_requirements", "requirement_name"]

_LINE = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<extras>\[[^\]]*\])?\s*(?P<spec>.*)"
)
_PIN = re.compile(r"===?\s*(?P<version>[A-Za-z0-9.+!_-]+)")


def requirement_name(requirement: str) -> str:
    """The PEP 503 normalised project name of a requirement line (``Scikit_Learn==1`` -> ``scikit-learn``)."""
    match = _LINE.fullmatch(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match["name"]).lower()


def parse_requirements_file(path: Path) -> list[str]:
    """The requirement lines of a ``requirements.txt`` (comments and blank lines dropped)."""
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise PackageInvalid(
                f"{path.name} line {number}: pip options ({line.split()[0]}) are not supported in a package;"
                " list one pinned requirement per line",
                field=path.name,
            )
        lines.append(line)
    return lines


def _pin_one(line: str, source: str) -> str:
    requirement, _, marker = line.partition(";")
    match = _LINE.fullmatch(requirement.strip())
    if match is None or "@" in match["spec"] or "://" in line:
        raise PackageInvalid(
            f"{source}: cannot read requirement {line!r} (name and version only)", field=source
        )
    name = re.sub(r"[-_.]+", "-", match["name"]).lower()
    extras = (match["extras"] or "").replace(" ", "")
    spec = match["spec"].strip()
    pinned = _PIN.fullmatch(spec)
    if pinned and "*" not in spec:
        version = pinned["version"]
    else:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise PackageInvalid(
                f"{source}: requirement {line!r} is not pinned (name==version) and {name} is not installed"
                " here to pin it from; pin it or install it",
                field=source,
            ) from None
    suffix = f"; {marker.strip()}" if marker.strip() else ""
    pinned_line = f"{name}{extras}=={version}{suffix}"
    problem = check_requirement(pinned_line)
    if problem:
        raise PackageInvalid(f"{source}: requirement {line!r} {problem}", field=source)
    return pinned_line


def pin_requirements(lines: Iterable[str], source: str = "requirements.txt") -> list[str]:
    """Every requirement pinned (see the module docstring), sorted by name; duplicates refused."""
    pinned: dict[str, str] = {}
    for line in lines:
        result = _pin_one(line, source)
        name = requirement_name(result.partition(";")[0].partition("==")[0])
        if name in pinned and pinned[name] != result:
            raise PackageInvalid(
                f"{source}: {name} is required twice ({pinned[name]}, {result})", field=source
            )
        pinned[name] = result
    return [pinned[name] for name in sorted(pinned)]
