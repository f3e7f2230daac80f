"""Reading a deploy file: YAML -> ``DeployFile``, with errors that name the line and the field.

    deploy.yaml:7: deployments[0].versions[1].spec.replicas: Input should be greater than or equal to 0

The YAML is parsed once into nodes (``yaml.compose`` semantics, the safe tag set only). The nodes are
checked for duplicate keys, which PyYAML would silently resolve to the last one, then constructed into
plain data and validated by the pydantic models of ``deploy/spec.py``. Every validation error's
location (keys and list indexes) is walked down the nodes to find its line: the line of the key that
names the field (of the item, in a list), or for a missing field the line of the mapping that lacks it.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from modelyard.deploy.spec import DeployFile
from modelyard.errors import InvalidInput

__all__ = ["DeployFileError", "DeployFileProblem", "format_field", "load_deploy_file", "read_deploy_file"]

# Nodes visited while checking the document, aliases expanded: bounds the work a file of aliases
# of aliases ("billion laughs") or a recursive alias can cause before validation even starts.
MAX_NODES = 200_000
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
    problem, sorted by line; the message is one ``source:line: field: message`` line per problem."""

    def __init__(self, source: str, errors: Sequence[tuple[int, str, str]]) -> None:
        self.source = source
        self.errors = sorted((DeployFileProblem(*error) for error in errors), key=lambda e: e.line)
        lines = [
            f"{source}:{e.line}: {e.field}: {e.message}" if e.field else f"{source}:{e.line}: {e.message}"
            for e in self.errors
        ]
        super().__init__("\n".join(lines), field=(self.errors[0].field or None) if self.errors else None)


def read_deploy_file(path: str | os.PathLike[str]) -> DeployFile:
    """Read and validate the deploy file at ``path`` (UTF-8). ``OSError`` propagates."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DeployFileError(str(path), [(line, "", "the file is not valid UTF-8")]) from None
    return load_deploy_file(text, source=str(path))


def load_deploy_file(text: str, source: str = "<deploy file>") -> DeployFile:
    """Parse and validate a deploy file's text; ``source`` names it in error messages.

    An empty document (or one of only comments) is an empty ``DeployFile``. Raises
    ``DeployFileError`` listing every problem found.
    """
    root, data = _parse(text, source)
    if root is None or data is None:
        return DeployFile()
    try:
        return DeployFile.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(root, error) for error in exc.errors(include_url=False)]
        raise DeployFileError(source, problems) from None


def format_field(loc: Sequence[str | int]) -> str:
    """``("deployments", 0, "versions")`` -> ``deployments[0].versions``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- YAML ------------------------------------------------------------------------------------------


def _parse(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's root node and its constructed data, or ``(None, None)`` when it is empty."""
    try:
        loader = yaml.SafeLoader(text)  # checks the characters at once: may raise ReaderError
    except yaml.YAMLError as exc:
        raise DeployFileError(source, [_yaml_problem(exc, text)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        duplicates = _duplicate_keys(root, source)
        if duplicates:
            raise DeployFileError(source, duplicates)
        return root, loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise DeployFileError(source, [_yaml_problem(exc, text)]) from None
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


def _duplicate_keys(root: yaml.Node, source: str) -> list[tuple[int, str, str]]:
    """Every key given twice in one mapping, on the line of its second occurrence."""
    found: list[tuple[int, str, str]] = []
    reported: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    visited = 0
    while stack:
        node, loc = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise DeployFileError(source, [(1, "", f"more than {MAX_NODES} YAML nodes (aliases expanded)")])
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    ident = (key.tag, key.value)
                    if ident in first_line and id(key) not in reported:
                        reported.add(id(key))
                        message = f"duplicate key {key.value!r} (first on line {first_line[ident]})"
                        found.append((key.start_mark.line + 1, format_field((*loc, key.value)), message))
                    first_line.setdefault(ident, key.start_mark.line + 1)
                stack.append((value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?")))
    return found


# --- validation errors -> lines --------------------------------------------------------------------


def _problem(root: yaml.Node, error: ErrorDetails) -> tuple[int, str, str]:
    ctx = error.get("ctx") or {}
    loc: Loc = (*error["loc"], *ctx.get("at", ()))
    line, found = _locate(root, loc, missing_ok=error["type"] == "missing")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and found:
        message = _unknown_field(found[:-1], str(found[-1]))
    elif error["type"] == "model_type" and not found:
        message = "the file must be a mapping with a 'deployments' list"
    return line, format_field(found), message


def _locate(root: yaml.Node, loc: Loc, *, missing_ok: bool) -> tuple[int, Loc]:
    """The line of the deepest node ``loc`` reaches, and the part of ``loc`` found in the document.

    A mapping's value is placed on its key's line: for a block mapping or list that is the line naming
    the field, where the value itself starts a line below. The parts past the last node found are
    dropped (pydantic's union-member tags such as ``str`` or ``float``), except the field a
    ``missing`` error names, which is reported on the line of the mapping that lacks it.
    """
    found: Loc = ()
    node, line = root, root.start_mark.line + 1
    for index, part in enumerate(loc):
        child = _child(node, part)
        if child is None:
            if missing_ok and index == len(loc) - 1:
                found = (*found, part)
            break
        (line, node), found = child, (*found, part)
    return line, found


def _child(node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
    """The node at key or index ``part`` below ``node``, with its 1-based line."""
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if 0 <= part < len(node.value):
            item: yaml.Node = node.value[part]
            return item.start_mark.line + 1, item
        return None
    if isinstance(node, yaml.MappingNode):
        pairs = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
        if pairs:  # the last one wins, as in the constructed data (merge keys come first)
            key, value = pairs[-1]
            return key.start_mark.line + 1, value
    return None


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
