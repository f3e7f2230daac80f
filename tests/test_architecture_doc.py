"""docs/architecture.md's module tree lists exactly the modules in src/modelyard/.

The tree is how a newcomer finds their way; one that misses modules (or names ones that moved) is a
bug. Package ``__init__`` files, ``__main__`` and the migration revisions are not listed one by one.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "modelyard"
_ENTRY = re.compile(r"^(?P<indent>(?:[│ ] {3})*)[├└]── (?P<names>.*)$")


def documented_tree(text: str) -> set[str]:
    """Paths (relative to src/modelyard/) of every file and folder the doc's tree names.

    A line is ``├── name  description`` at a depth of four columns per level; several names may
    share a line (``schema.py, store.py   description``): they live in the same folder.
    """
    block = text.split("```\nsrc/modelyard/\n", 1)[1].split("```", 1)[0]
    folders: list[str] = []
    found: set[str] = set()
    for line in block.splitlines():
        entry = _ENTRY.match(line)
        if entry is None:
            continue  # a description continued on the next line
        depth = len(entry.group("indent")) // 4
        del folders[depth:]
        column = re.split(r" {2,}", entry.group("names").strip(), maxsplit=1)[0]
        for name in (part.strip() for part in column.split(",")):
            path = "/".join([*folders, name.rstrip("/")])
            found.add(path)
            if name.endswith("/"):
                folders.append(name.rstrip("/"))
    return found


def modules_on_disk() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if path.name in ("__init__.py", "__main__.py") or "versions" in relative.parts:
            continue
        found.add(relative.as_posix())
        found.update(parent.as_posix() for parent in relative.parents if parent != Path("."))
    return found


def test_the_tree_lists_every_module_and_only_those() -> None:
    documented = documented_tree(DOC.read_text())
    on_disk = modules_on_disk()
    assert sorted(on_disk - documented) == [], "modules missing from docs/architecture.md's tree"
    assert sorted(documented - on_disk) == [], "docs/architecture.md's tree names what does not exist"


def test_the_parser_reads_depth_and_shared_lines() -> None:
    text = (
        "```\nsrc/modelyard/\n"
        "├── errors.py        domain errors\n"
        "├── gateway/         the data plane\n"
        "│   ├── a.py, b.py   two at once\n"
        "│   │                a continued description\n"
        "│   └── logs/\n"
        "│       └── record.py    deep\n"
        "└── cli/\n"
        "    └── main.py\n"
        "```\n"
    )
    assert documented_tree(text) == {
        "errors.py", "gateway", "gateway/a.py", "gateway/b.py", "gateway/logs", "gateway/logs/record.py",
        "cli", "cli/main.py",
    }  # fmt: skip
