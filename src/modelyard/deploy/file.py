"""Reading a deploy file: YAML -> ``DeployFile``, with errors that name the line and the field.

    deploy.yaml:7: deployments[0].versions[1].spec.replicas: Input should be greater than or equal to 0

The YAML is parsed once into nodes (``yaml.compose`` semantics, the safe tag set only). The nodes are
checked for duplicate keys, which PyYAML would silently resolve to the last one, then constructed into
plain data and validated by the pydantic models of ``deploy/spec.py``. Every validation error's
location (keys and list indexes) is walked down the nodes to find its line: the line of the key that
names the field (of the item, in a list), or for a missing field the line of the mapping that lacks it.

Every step is linear in the file's size, and the file is bounded before any of it runs: at most
``MAX_FILE_BYTES``, nested at most ``MAX_DEPTH`` levels, at most ``MAX_NODES`` nodes with aliases
expanded (a recursive alias is refused as such). The composer counts as it goes, so a file past a
limit costs the work up to the limit, and the message names the limit.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from modelyard.deploy.spec import DeployFile
from modelyard.errors import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from modelyard.deploy.policy import DeployPolicy

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "DeployFileError",
    "DeployFileProblem",
    "DeployFileTooLarge",
    "format_field",
    "load_deploy_file",
    "read_deploy_file",
    "read_deploy_text",
]

# The limits. A deploy file of a few hundred versions is some 100 KiB, some 10,000 nodes and nested
# 9 levels deep; pure-Python YAML scans about 1 MiB a second, so each limit also bounds the time a
# file can cost before it is refused to about a second.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Nodes with aliases expanded: what validation would walk. Bounds a file of aliases of aliases
# ("billion laughs") or of merge keys merging merges before validation even starts.
MAX_NODES = 50_000
MAX_PROBLEMS_SHOWN = 100  # the message lists this many; ``errors`` holds them all
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]


class DeployFileProblem(NamedTuple):
    """One thing wrong with a deploy file: 1-based ``line``, ``field`` path ("" for the whole
    document or a YAML syntax error) and what is wrong."""

    line: int
    field: str
    message: str


class DeployFileError(InvalidInput):
    """A deploy file that is not valid YAML or not a valid deploy file. ``errors`` lists every
    problem, sorted by line; the message is one ``source:line: field: message`` line per problem
    (the first ``MAX_PROBLEMS_SHOWN`` of them, then how many more there are)."""

    def __init__(self, source: str, errors: Sequence[tuple[int, str, str]]) -> None:
        self.source = source
        self.errors = sorted((DeployFileProblem(*error) for error in errors), key=lambda e: e.line)
        lines = [
            f"{source}:{e.line}: {e.field}: {e.message}" if e.field else f"{source}:{e.line}: {e.message}"
            for e in self.errors[:MAX_PROBLEMS_SHOWN]
        ]
        if len(self.errors) > MAX_PROBLEMS_SHOWN:
            lines.append(f"{source}: and {len(self.errors) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(lines), field=(self.errors[0].field or None) if self.errors else None)


class DeployFileTooLarge(PayloadTooLarge):
    """A deploy file over ``MAX_FILE_BYTES``, refused before it is parsed (413 over REST).
    ``size`` is what was seen: reading a file stops one byte past the limit."""

    def __init__(self, source: str, size: int, limit: int = MAX_FILE_BYTES) -> None:
        super().__init__(size, limit)
        where = f"{source}: " if source else ""
        self.message = (
            f"{where}the deploy file is larger than the limit of {limit} bytes ({limit // 1024} KiB)"
        )
        self.args = (self.message,)


def read_deploy_file(path: str | os.PathLike[str], *, policy: DeployPolicy | None = None) -> DeployFile:
    """Read and validate the deploy file at ``path`` (UTF-8). ``OSError`` propagates."""
    return load_deploy_file(read_deploy_text(path), source=str(path), policy=policy)


def read_deploy_text(path: str | os.PathLike[str]) -> str:
    """The text of the deploy file at ``path``, read as UTF-8. ``OSError`` propagates.

    At most ``MAX_FILE_BYTES`` + 1 bytes are read: a larger file is ``DeployFileTooLarge`` at once,
    however large it is (or a device that never ends)."""
    with open(path, "rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise DeployFileTooLarge(str(path), len(data))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DeployFileError(str(path), [(line, "", "the file is not valid UTF-8")]) from None


def load_deploy_file(
    text: str, source: str = "<deploy file>", *, policy: DeployPolicy | None = None
) -> DeployFile:
    """Parse and validate a deploy file's text; ``source`` names it in error messages.

    An empty document (or one of only comments) is an empty ``DeployFile``. Raises
    ``DeployFileTooLarge`` for text over ``MAX_FILE_BYTES`` (UTF-8), and ``DeployFileError`` listing
    every problem found, those ``policy`` finds in a valid file included (what this control plane
    lets a deploy file do: ``deploy/policy.py``).
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise DeployFileTooLarge(source, size)
    root, data = _parse(text, source)
    if root is None or data is None:
        return DeployFile()
    try:
        loaded = DeployFile.model_validate(data)
    except ValidationError as exc:
        index = _Index()
        problems = [_problem(root, error, index) for error in exc.errors(include_url=False)]
        raise DeployFileError(source, problems) from None
    refused = policy.problems(loaded) if policy is not None else []
    if refused:
        index = _Index()
        raise DeployFileError(source, [_placed(root, loc, message, index) for loc, message in refused])
    return loaded


def format_field(loc: Sequence[str | int]) -> str:
    """``("deployments", 0, "versions")`` -> ``deployments[0].versions``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- YAML ------------------------------------------------------------------------------------------


class _TooBig(Exception):
    """A limit passed while composing: stops the composer where it stands."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """The safe loader, counting nodes and levels as it composes: the composer recurses once per
    level (20,000 would overflow Python's stack), and a 1 MiB flow list holds 250,000 nodes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.nodes += 1
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooBig(self.get_mark().line + 1, f"nested more than {MAX_DEPTH} levels deep")
            if self.nodes > MAX_NODES:
                raise _TooBig(self.get_mark().line + 1, f"more than {MAX_NODES} YAML nodes")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _parse(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's root node and its constructed data, or ``(None, None)`` when it is empty."""
    try:
        loader = _Loader(text)  # checks the characters at once: may raise ReaderError
    except yaml.YAMLError as exc:
        raise DeployFileError(source, [_yaml_problem(exc, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        problems = _check_nodes(root)
        if problems:
            raise DeployFileError(source, problems)
        return root, loader.construct_document(root)
    except _TooBig as exc:
        raise DeployFileError(source, [(exc.line, "", exc.message)]) from None
    except yaml.YAMLError as exc:
        raise DeployFileError(source, [_yaml_problem(exc, text)]) from None
    except RecursionError:  # not expected within the limits: still a clear answer, never a crash
        raise DeployFileError(source, [(1, "", "nested too deeply to read")]) from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[int, str, str]:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        message = f"invalid YAML: {exc.problem}"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} on line {exc.context_mark.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
        return exc.problem_mark.line + 1, "", message
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return line, "", f"invalid YAML: {str(exc).splitlines()[0]}"
    return 1, "", f"invalid YAML: {exc}"


def _check_nodes(root: yaml.Node) -> list[tuple[int, str, str]]:
    """A recursive alias, more than ``MAX_NODES`` nodes with aliases expanded, or every key given
    twice in one mapping (on the line of its second occurrence).

    One depth-first walk that visits each distinct node once, however many aliases name it: the
    size of a node with its aliases expanded is summed from its children's (capped), a node met
    again while it is still being walked is a recursive alias, and a node's path is kept as a link
    to the first parent that reached it, so it is only spelled out for a duplicate key.
    """
    size: dict[int, int] = {}  # expanded size of each node walked, capped at MAX_NODES + 1
    parents: dict[int, tuple[yaml.Node, str | int]] = {}
    walking: set[int] = set()
    found: list[tuple[int, str, str]] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            walking.discard(id(node))
            size[id(node)] = min(MAX_NODES + 1, 1 + sum(size[id(child)] for _, child in _edges(node)))
            continue
        if id(node) in size:
            continue
        if id(node) in walking:  # reached again from inside itself
            field = format_field(_path(node, parents))
            return [(node.start_mark.line + 1, field, "a recursive alias: this node contains itself")]
        walking.add(id(node))
        stack.append((node, True))
        found.extend(_duplicate_keys(node, parents))
        for part, child in _edges(node):
            parents.setdefault(id(child), (node, part))
            if id(child) not in size:
                stack.append((child, False))
    if size[id(root)] > MAX_NODES:
        return [(1, "", f"more than {MAX_NODES} YAML nodes (aliases expanded)")]
    return found


def _edges(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """A node's children, each with the key or index that leads to it (keys are children too)."""
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, yaml.MappingNode):
        edges: list[tuple[str | int, yaml.Node]] = []
        for key, value in node.value:
            edges += [("?", key), (key.value if isinstance(key, yaml.ScalarNode) else "?", value)]
        return edges
    return []


def _path(node: yaml.Node, parents: dict[int, tuple[yaml.Node, str | int]]) -> Loc:
    """The keys and indexes from the root to ``node``, by the first parents that reached each."""
    parts: list[str | int] = []
    seen: set[int] = set()
    while id(node) in parents and id(node) not in seen:  # "seen": the root may sit in a cycle
        seen.add(id(node))
        node, part = parents[id(node)]
        parts.append(part)
    return tuple(reversed(parts))


def _duplicate_keys(
    node: yaml.Node, parents: dict[int, tuple[yaml.Node, str | int]]
) -> list[tuple[int, str, str]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    found: list[tuple[int, str, str]] = []
    first_line: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
            ident = (key.tag, key.value)
            if ident in first_line:
                message = f"duplicate key {key.value!r} (first on line {first_line[ident]})"
                field = format_field((*_path(node, parents), key.value))
                found.append((key.start_mark.line + 1, field, message))
            else:
                first_line[ident] = key.start_mark.line + 1
    return found


# --- validation errors -> lines --------------------------------------------------------------------


class _Index:
    """Each mapping's keys, gathered once: a file with thousands of errors in one mapping would
    otherwise scan that mapping once per error."""

    def __init__(self) -> None:
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def child(self, node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
        """The node at key or index ``part`` below ``node``, with its 1-based line."""
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                item: yaml.Node = node.value[part]
                return item.start_mark.line + 1, item
            return None
        if not isinstance(node, yaml.MappingNode):
            return None
        keys = self._keys.get(id(node))
        if keys is None:
            # The last one wins, as in the constructed data (merged keys come first).
            keys = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            self._keys[id(node)] = keys
        found = keys.get(str(part))
        return None if found is None else (found[0].start_mark.line + 1, found[1])


def _problem(root: yaml.Node, error: ErrorDetails, index: _Index) -> tuple[int, str, str]:
    ctx = error.get("ctx") or {}
    loc: Loc = (*error["loc"], *ctx.get("at", ()))
    line, found = _locate(root, loc, index, missing_ok=error["type"] == "missing")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and found:
        message = _unknown_field(found[:-1], str(found[-1]))
    elif error["type"] == "model_type" and not found:
        message = "the file must be a mapping with a 'deployments' list"
    return line, format_field(found), message


def _placed(root: yaml.Node, loc: Loc, message: str, index: _Index) -> tuple[int, str, str]:
    """A problem the policy found at ``loc`` in a valid file, on that field's line."""
    line, _ = _locate(root, loc, index, missing_ok=False)
    return line, format_field(loc), message


def _locate(root: yaml.Node, loc: Loc, index: _Index, *, missing_ok: bool) -> tuple[int, Loc]:
    """The line of the deepest node ``loc`` reaches, and the part of ``loc`` found in the document.

    A mapping's value is placed on its key's line: for a block mapping or list that is the line naming
    the field, where the value itself starts a line below. The parts past the last node found are
    dropped (pydantic's union-member tags such as ``str`` or ``float``), except the field a
    ``missing`` error names, which is reported on the line of the mapping that lacks it.
    """
    found: Loc = ()
    node, line = root, root.start_mark.line + 1
    for position, part in enumerate(loc):
        child = index.child(node, part)
        if child is None:
            if missing_ok and position == len(loc) - 1:
                found = (*found, part)
            break
        (line, node), found = child, (*found, part)
    return line, found


def _unknown_field(parent: Loc, key: str) -> str:
    """``unknown field 'replica' (did you mean 'replicas'?)``, listing the allowed fields."""
    model = _model_at(parent)
    if model is None:
        return f"unknown field {key!r}"
    names = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {key!r} ({hint}expected one of: {', '.join(names)})"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model validating the value at ``loc`` in a ``DeployFile``, if it is one."""
    annotation: Any = DeployFile
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(part, int) and get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
            if part not in fields:
                return None
            annotation = fields[str(part)].annotation
        else:
            return None
    annotation = _strip_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation
