"""``RouteFile``: the gateway's routing table read from a file, or a folder of files, instead of
the control-plane database (``modelyard gateway serve --routes PATH``, ``GatewaySettings.routes_file``).

A file is JSON when its name ends in ``.json``, else YAML (several ``---`` documents allowed). Each
document is one of:

- one route in the form of ``routing.table.route_to_dict`` — what a routes ConfigMap rendered by
  ``deploy/targets/kubernetes/manifests.py`` holds in ``routes.json``, and what ``modelyard route show
  P/M --json`` prints;
- a list of such routes (``modelyard route show --json``);
- ``{"routes": [...]}``, what ``GET /-/routing`` answers (its ``revision`` is ignored).

A folder stands for every ``*.json``, ``*.yaml`` and ``*.yml`` file in it whose name does not start
with ``.`` (a ConfigMap volume keeps its real files in hidden ``..data`` folders and links them from
the visible names). A route may leave out its options and a version every field but ``version``
(the defaults of ``routing/table.py``); an unknown field is an error, so a typo never passes.

It is watched: every poll of the worker (``refresh_interval_s``) stats the files, and reads them
again when a stat changed or a second has passed since the last read (two edits within one tick of
the file system's clock can leave the mtime as it was). Content that did not change is not parsed
again; content that parses becomes the next revision. While a file is missing, empty or malformed,
:meth:`RouteFile.revision` raises an :class:`InvalidInput` naming the file and the field, and the
worker keeps the last table that parsed (the worker's ``TablePoller``, ``gateway/tablepoll.py``,
records and logs the error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelyard.errors import InvalidInput
from modelyard.routing.table import (
    MAX_TIMEOUT_S,
    MAX_WEIGHT,
    PAYLOAD_MODES,
    ModelRoute,
    RoutingTable,
    VersionRoute,
    check_name,
    check_replica_url,
    route_from_dict,
)

__all__ = ["RECHECK_S", "SUFFIXES", "RouteFile", "parse_routes"]

RECHECK_S = 1.0  # read the files at least this often even when their stats stay the same
SUFFIXES = (".json", ".yaml", ".yml")
_ROUTE_KEYS = ("project", "model", "timeout_s", "log_payload", "log_sample", "versions")
_VERSION_KEYS = ("version", "weight", "mirror", "mirror_fraction", "target", "replicas")
_IGNORED = ("revision", "error")  # what GET /-/routing adds to its routes
_ROUTE = ModelRoute(project="", model="")  # the defaults of what a route leaves out
_VERSION = VersionRoute(version="")

Key = tuple[str, str]


class RouteFile:
    """A :class:`~modelyard.gateway.tablepoll.TableSource` on a routes file or folder (see the module
    docstring). Not thread-safe: one worker polls it from one thread at a time."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._stats: object = None  # what the files' stats were at the last read
        self._read_at = -math.inf  # the clock's time of the last read
        self._digest: bytes | None = None  # of the content last read
        self._good: bytes | None = None  # of the content that made the table in use
        self._table: RoutingTable | None = None
        self._error: InvalidInput | None = None  # why the content last read is not in use
        self._revision = 0

    def revision(self) -> int:
        """The revision of the last content that parsed (1 for the first, then one per change);
        raises InvalidInput while the files as they are now cannot be used."""
        self._check()
        if self._error is not None:
            raise InvalidInput(self._error.message, field=self._error.field)
        return self._revision

    def load(self) -> RoutingTable:
        """The table of the last content that parsed (raises when none ever did)."""
        if self._table is None:
            self.revision()
        if self._table is None:  # revision() raised unless something parsed meanwhile
            raise InvalidInput(f"{self.path}: no routing table read yet", field="routes")
        return self._table

    def _check(self) -> None:
        now = self._clock()
        stats = self._stat()
        if stats == self._stats and now - self._read_at < RECHECK_S:
            return
        self._stats, self._read_at = stats, now
        try:
            files = self._read()
        except InvalidInput as exc:
            self._digest, self._error = None, exc
            return
        digest = _digest(files)
        if digest == self._digest:
            return
        self._digest = digest
        if digest == self._good:  # back to the content in use (after an error): nothing to reload
            self._error = None
            return
        try:
            routes = parse_routes(files)
        except InvalidInput as exc:
            self._error = exc
            return
        self._revision += 1
        self._table = RoutingTable(self._revision, routes)
        self._good, self._error = digest, None

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            return [self.path]
        return sorted(
            entry
            for entry in self.path.iterdir()
            if not entry.name.startswith(".") and entry.suffix in SUFFIXES and entry.is_file()
        )

    def _stat(self) -> object:
        try:
            return [(str(path), *_stat_key(path.stat())) for path in self._files()]
        except OSError as exc:
            return exc.errno

    def _read(self) -> list[tuple[str, bytes]]:
        try:
            files = self._files()
            if not files:
                raise InvalidInput(
                    f"{self.path}: the folder holds no {', '.join('*' + s for s in SUFFIXES)} file",
                    field="routes",
                )
            return [(str(path), path.read_bytes()) for path in files]
        except OSError as exc:
            name = exc.filename or self.path
            raise InvalidInput(
                f"{name}: cannot read the routes: {exc.strerror or exc}", field="routes"
            ) from None


def parse_routes(files: Sequence[tuple[str, bytes]]) -> dict[Key, ModelRoute]:
    """Every route in ``files`` (``(name, content)`` pairs, see the module docstring), by
    ``(project, model)``; raises InvalidInput naming the file and the field at fault."""
    routes: dict[Key, ModelRoute] = {}
    where: dict[Key, str] = {}
    for name, content in files:
        for at, data in _documents(name, content):
            route = _route(at, data)
            key = (route.project, route.model)
            if key in routes:
                raise at.error(
                    f"the route {route.project}/{route.model} is listed twice (also at {where[key]})"
                )
            routes[key], where[key] = route, f"{at.label}: {at.path or 'the document'}"
    return routes


@dataclasses.dataclass(frozen=True)
class _At:
    """Where a value is: its file (and document), and its field path in that document."""

    label: str
    path: str = ""

    def __truediv__(self, key: str | int) -> _At:
        if isinstance(key, int):
            return _At(self.label, f"{self.path}[{key}]")
        return _At(self.label, f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> InvalidInput:
        field = self.path or "route"
        return InvalidInput(f"{self.label}: {field}: {problem}", field=field)


def _documents(name: str, content: bytes) -> Iterator[tuple[_At, object]]:
    """Each route in one file, with where it is."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name}: not UTF-8 text", field="routes") from None
    if not text.strip():  # a writer caught half-way (truncated, not yet written) must not empty the table
        raise InvalidInput(f"{name}: the file is empty (write [] for a table with no routes)", field="routes")
    documents = _load_json(name, text) if name.endswith(".json") else _load_yaml(name, text)
    for index, document in enumerate(documents):
        label = name if len(documents) == 1 else f"{name} (document {index + 1})"
        if document is None:  # an empty YAML document, as between two "---"
            continue
        at = _At(label)
        if isinstance(document, dict) and "routes" in document and "project" not in document:
            extra = [key for key in document if key not in ("routes", *_IGNORED)]
            if extra:
                raise (at / str(extra[0])).error("unknown field (expected routes; revision, error ignored)")
            at, document = at / "routes", document["routes"]
            if not isinstance(document, list):
                raise at.error("must be a list of routes")
        if isinstance(document, list):
            yield from ((at / index, item) for index, item in enumerate(document))
        elif isinstance(document, dict):
            yield at, document
        else:
            raise at.error("must be a route, a list of routes, or a mapping with a routes list")


def _load_json(name: str, text: str) -> list[object]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) < len(items):
            twice = next(key for index, (key, _) in enumerate(items) if key in dict(items[:index]))
            raise InvalidInput(f"{name}: duplicate key {twice!r}", field="routes")
        return found

    try:
        return [json.loads(text, object_pairs_hook=pairs)]
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}", field="routes") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML would keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode) and key.value != "<<"]
        twice = next((key for index, key in enumerate(keys) if key in keys[:index]), None)
        if twice is not None:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {twice!r}", node.start_mark)
        return super().construct_mapping(node, deep)


def _load_yaml(name: str, text: str) -> list[object]:
    try:
        return list(yaml.load_all(text, Loader=_Loader))  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{name}{line}: invalid YAML: {problem}", field="routes") from None


def _route(at: _At, data: object) -> ModelRoute:
    mapping = _mapping(at, data, _ROUTE_KEYS, required=("project", "model"))
    project, model = _name(at / "project", mapping["project"]), _name(at / "model", mapping["model"])
    items = mapping.get("versions", [])
    if not isinstance(items, list):
        raise (at / "versions").error("must be a list of versions")
    versions = [_version(at / "versions" / index, item) for index, item in enumerate(items)]
    names = [version["version"] for version in versions]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise (at / "versions" / index / "version").error(f"version {name!r} is listed twice")
    return route_from_dict(
        {
            "project": project,
            "model": model,
            "timeout_s": _timeout(at / "timeout_s", mapping.get("timeout_s", _ROUTE.timeout_s)),
            "log_payload": _payload(at / "log_payload", mapping.get("log_payload", _ROUTE.log_payload)),
            "log_sample": _fraction(at / "log_sample", mapping.get("log_sample", _ROUTE.log_sample), True),
            "versions": versions,
        }
    )


def _version(at: _At, data: object) -> dict[str, Any]:
    """One version, checked, in the form of ``route_to_dict``."""
    mapping = _mapping(at, data, _VERSION_KEYS, required=("version",))
    weight = mapping.get("weight", _VERSION.weight)
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise (at / "weight").error(f"must be an integer from 0 to {MAX_WEIGHT}")
    mirror = mapping.get("mirror", _VERSION.mirror)
    if not isinstance(mirror, bool):
        raise (at / "mirror").error("must be true or false")
    target = mapping.get("target", _VERSION.target)
    urls = mapping.get("replicas", [])
    if not isinstance(urls, list):
        raise (at / "replicas").error("must be a list of replica URLs")
    replicas = [_url(at / "replicas" / index, url) for index, url in enumerate(urls)]
    return {
        "version": _name(at / "version", mapping["version"]),
        "weight": weight,
        "mirror": mirror,
        "mirror_fraction": _fraction(
            at / "mirror_fraction", mapping.get("mirror_fraction", _VERSION.mirror_fraction), False
        ),
        "target": "" if target == "" else _name(at / "target", target),
        "replicas": list(dict.fromkeys(replicas)),  # a URL listed twice is one replica
    }


def _mapping(at: _At, data: object, keys: Sequence[str], required: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise at.error(f"must be a mapping with the fields {', '.join(keys)}")
    for key in data:
        if key not in keys:
            raise (at / str(key)).error(f"unknown field (expected one of: {', '.join(keys)})")
    for key in required:
        if key not in data:
            raise (at / key).error("is required")
    return data


def _name(at: _At, value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise at.error(f"must be a string: quote it ({value!r} reads as a number)")
    try:
        return check_name(value, "name")  # type: ignore[arg-type]  # check_name refuses a non-str
    except InvalidInput as exc:
        raise at.error(exc.message) from None


def _url(at: _At, value: object) -> str:
    try:
        return check_replica_url(value, "url")  # type: ignore[arg-type]  # it refuses a non-str
    except InvalidInput as exc:
        raise at.error(exc.message) from None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _timeout(at: _At, value: object) -> float:
    number = _number(value)
    if number is None or not 0 < number <= MAX_TIMEOUT_S:
        raise at.error(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    return number


def _fraction(at: _At, value: object, allow_zero: bool) -> float:
    number = _number(value)
    if number is None or not 0 <= number <= 1 or (number == 0 and not allow_zero):
        raise at.error(f"must be a number with {'0 <=' if allow_zero else '0 <'} value <= 1")
    return number


def _payload(at: _At, value: object) -> str:
    if value not in PAYLOAD_MODES:
        raise at.error(f"must be one of {', '.join(PAYLOAD_MODES)}")
    return str(value)


def _stat_key(stat: Any) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _digest(files: Sequence[tuple[str, bytes]]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for name, content in files:
        digest.update(b"%d:%s%d:" % (len(name), name.encode(), len(content)))
        digest.update(content)
    return digest.digest()
