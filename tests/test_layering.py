"""The import direction of the architecture (docs/architecture.md), checked with an AST scan of src/.

- ``errors`` and ``dtypes`` import no other modelyard module;
- ``sdk`` imports only ``sdk``, ``errors`` and ``dtypes``;
- ``server`` never imports ``protocols``, ``app``, ``serve`` or ``cli``;
- ``protocols`` never imports ``app``, ``serve``, ``cli`` or ``runtimes``;
- ``runtimes`` never imports ``protocols``, ``app``, ``serve`` or ``cli``;
- the core (``errors``, ``dtypes``, ``sdk``, ``server``) never imports a web framework or server;
- ``package`` (the package plane) never imports ``protocols``, ``app``, ``serve``, ``cli`` or
  ``registry``: the registry depends on packages, never the other way round;
- ``registry`` never imports the OIP or TF-Serving protocols, ``app``, ``serve``, ``cli`` or the model
  ``server`` (it may use the shared ``protocols.http`` and ``protocols.listen`` helpers);
- the registry's transport-free core (everything but ``rest``, ``uploads``, ``server``, ``client``,
  ``fetch`` and the package's ``__init__``, which re-exports the client) imports neither a web
  framework nor an HTTP client;
- the ``registry`` never imports the ``gateway`` or the control-plane composition root ``control``;
  the ``gateway`` may use the registry's storage (``registry.db``, ``registry.settings``,
  ``registry.schema``: the routing table lives in the same database) and nothing else of it;
- the gateway's routing-table core (``table``, ``schema``, ``store``, ``routes_api``) imports neither
  a web framework nor an HTTP client;
- the ``gateway`` never imports the model server, the SDK, runtimes, packages or the OIP/TF-Serving
  adapters (it passes bodies through; it only shares ``protocols.errors`` and ``protocols.listen``),
  and its proxy core (``balance``, ``router``, ``proxy``, ``mirror``, ``logs``, ``service``) imports
  no web framework: the ASGI adapter ``app`` and the HTTP/1.1 server ``http1`` are its edges;
- ``deploy`` never imports the model server, the SDK, runtimes or the protocol adapters, and its
  core (all but ``rest``, ``client`` and the ``local`` backend) no web framework or HTTP client;
- the client SDK (``client``) imports only itself, ``errors`` and ``dtypes`` (and the package root,
  for its version): nothing of the server, registry or gateway;
- no module imports torch, scikit-learn, onnxruntime, joblib or mlflow when it is imported: those
  are imported inside the functions that need them (or under ``if TYPE_CHECKING:``).

For the layering rules every import counts, wherever it is written (a function-level import or a
``TYPE_CHECKING`` import is still a dependency of the design). Relative imports are resolved, and
``from package import submodule`` counts as importing the submodule.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "modelyard"
HEAVY = ("torch", "sklearn", "onnxruntime", "joblib", "mlflow")
WEB = ("starlette", "uvicorn", "httptools", "uvloop", "fastapi", "h11", "websockets")
HTTP_CLIENTS = ("httpx", "httpcore", "requests", "urllib3", "aiohttp")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_DYNAMIC = {"import_module", "__import__"}  # importlib.import_module("x") and __import__("x")


@dataclass(frozen=True)
class Import:
    name: str  # the absolute dotted module imported
    line: int
    statement: str  # as written, for messages
    eager: bool  # runs when the importing module is imported: not in a function, not type-only


@dataclass(frozen=True)
class Source:
    label: str  # the file, relative to the repository root
    module: str
    imports: tuple[Import, ...]


def within(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or one of its submodules; a trailing ``*`` matches any module name suffix
    (``modelyard.server.protocols.oip*`` covers ``oip_rest``, ``oip_codec``... and their submodules)."""
    if prefix.endswith("*"):
        return name.startswith(prefix[:-1])
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _base_package(module: str, is_package: bool, level: int) -> str:
    """The package a relative import with ``level`` dots starts from."""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level - 1 > len(parts) - 1:
        raise ValueError(f"relative import beyond the top-level package in {module}")
    return ".".join(parts[: len(parts) - (level - 1)])


def scan(source: str, module: str, is_package: bool, known_modules: frozenset[str]) -> list[Import]:
    """Every import in ``source`` (the text of ``module``), with whether it runs at import time."""
    found: list[Import] = []

    def names_of(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                start = _base_package(module, is_package, node.level)
                base = f"{start}.{base}" if base else start
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            return [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known_modules else base
                for alias in node.names
            ]
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            first = node.args[0]
            if called in _DYNAMIC and isinstance(first, ast.Constant) and isinstance(first.value, str):
                return [first.value]
        return []

    def visit(node: ast.AST, lazy: bool, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                visit(statement, lazy, True)
            for statement in node.orelse:
                visit(statement, lazy, type_only)
            return
        for name in dict.fromkeys(names_of(node)):  # deduplicated, in order
            written = ast.unparse(node)
            found.append(Import(name, getattr(node, "lineno", 0), written, not (lazy or type_only)))
        if isinstance(node, _FUNCTIONS):
            # Decorators, defaults and annotations run at definition time; only the body is deferred.
            for field, value in ast.iter_fields(node):
                for child in value if isinstance(value, list) else [value]:
                    if isinstance(child, ast.AST):
                        visit(child, lazy or field == "body", type_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, type_only)

    visit(ast.parse(source), lazy=False, type_only=False)
    return found


@functools.cache
def sources() -> tuple[Source, ...]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = frozenset(module_name(path) for path in files)
    return tuple(
        Source(
            label=str(path.relative_to(ROOT)),
            module=module_name(path),
            imports=tuple(scan(path.read_text(), module_name(path), path.name == "__init__.py", known)),
        )
        for path in files
    )


@dataclass(frozen=True)
class Rule:
    id: str
    layers: tuple[str, ...]  # the modules the rule governs (each with its submodules)
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] | None = None  # when set: every modelyard import must be inside these
    exempt: tuple[str, ...] = ()  # inside ``forbidden`` but allowed all the same
    root_ok: bool = False  # the package root itself (``from modelyard import __version__``) is fine

    def governs(self, module: str) -> bool:
        return any(within(module, layer) for layer in self.layers)

    def breaks(self, name: str) -> bool:
        if self.root_ok and name == "modelyard":
            return False
        if any(within(name, prefix) for prefix in self.exempt):
            return False
        if any(within(name, prefix) for prefix in self.forbidden):
            return True
        return (
            self.allowed is not None
            and within(name, "modelyard")
            and not any(within(name, prefix) for prefix in self.allowed)
        )

    def violations(self, source: Source) -> Iterator[str]:
        for found in source.imports:
            if self.breaks(found.name):
                yield f"{source.label}:{found.line}: `{found.statement}` imports {found.name}"


def _m(*names: str) -> tuple[str, ...]:
    return tuple(f"modelyard.{name}" for name in names)


# The registry modules that know nothing of HTTP: rest, uploads and server are the REST edge, client
# talks HTTP, and fetch and the package's __init__ import client to offer both ways in.
REGISTRY_CORE = _m(
    "registry.core", "registry.db", "registry.schema", "registry.queries", "registry.aliases",
    "registry.store", "registry.refs", "registry.types", "registry.pages", "registry.files",
    "registry.packages", "registry.settings", "registry.api", "registry.openapi", "registry.migrations",
)  # fmt: skip

# The gateway modules that keep the routing table; rest, route_client and the proxy are its edges.
ROUTING_CORE = _m("gateway.table", "gateway.schema", "gateway.store", "gateway.routes_api")
# The deploy plane's pure parts: the file, its diff, Kubernetes manifests, the announcer.
DEPLOY_CORE = _m(
    "deploy.spec", "deploy.file", "deploy.diff", "deploy.kubernetes", "deploy.discovery", "deploy.apply",
    "deploy.service", "deploy.state", "deploy.schema", "deploy.backend",
)  # fmt: skip
# The gateway's request path without its front ends (app: ASGI, http1: raw HTTP/1.1).
PROXY_CORE = _m(
    "gateway.balance", "gateway.router", "gateway.proxy", "gateway.mirror", "gateway.logs", "gateway.service"
)

RULES = [
    Rule("errors-and-dtypes-import-nothing-of-ours", _m("errors", "dtypes"), allowed=()),
    Rule("sdk-imports-only-sdk-errors-dtypes", _m("sdk"), allowed=_m("sdk", "errors", "dtypes")),
    Rule("server-never-imports-the-edge", _m("server"), forbidden=_m("protocols", "app", "serve", "cli")),
    Rule(
        "protocols-never-import-up-or-runtimes",
        _m("protocols"),
        forbidden=_m("app", "serve", "cli", "runtimes"),
    ),
    Rule("runtimes-never-import-the-edge", _m("runtimes"), forbidden=_m("protocols", "app", "serve", "cli")),
    Rule("the-core-has-no-web-framework", _m("errors", "dtypes", "sdk", "server"), forbidden=WEB),
    Rule(
        "package-never-imports-the-edge-or-the-registry",
        _m("package"),
        forbidden=_m("protocols", "app", "serve", "cli", "registry"),
    ),
    Rule(
        "registry-never-imports-the-serving-edge",
        _m("registry"),
        forbidden=_m("protocols.oip*", "protocols.tfserving*", "app", "serve", "cli", "server"),
    ),
    Rule("the-registry-core-is-transport-free", REGISTRY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule("registry-never-imports-the-gateway", _m("registry"), forbidden=_m("gateway", "control")),
    Rule(
        "gateway-uses-only-the-registry-storage",
        _m("gateway"),
        forbidden=_m("registry", "control"),
        # Not the package itself: `from modelyard.registry import X` goes through its __init__.
        exempt=_m("registry.db", "registry.settings", "registry.schema"),
    ),
    Rule("the-routing-table-core-is-transport-free", ROUTING_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "gateway-never-imports-the-serving-plane",
        _m("gateway"),
        forbidden=_m(
            "server",
            "sdk",
            "runtimes",
            "package",
            "app",
            "serve",
            "cli",
            "protocols.oip*",
            "protocols.tfserving*",
        ),
    ),
    Rule("the-proxy-core-has-no-web-framework", PROXY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "deploy-never-imports-the-serving-plane",
        _m("deploy"),
        forbidden=_m(
            "server", "sdk", "runtimes", "app", "serve", "cli", "protocols.oip*", "protocols.tfserving*"
        ),
    ),
    Rule("the-deploy-core-is-transport-free", DEPLOY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "client-imports-only-errors-and-dtypes",
        _m("client"),
        allowed=_m("client", "errors", "dtypes"),
        root_ok=True,
    ),
]


def heavy_violations(source: Source) -> Iterator[str]:
    for found in source.imports:
        if found.eager and any(within(found.name, heavy) for heavy in HEAVY):
            yield f"{source.label}:{found.line}: `{found.statement}` imports {found.name} at import time"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_imports_flow_one_way(rule: Rule) -> None:
    governed = [source for source in sources() if rule.governs(source.module)]
    assert governed, f"{rule.id}: no module under {rule.layers} (is the rule out of date?)"
    problems = [problem for source in governed for problem in rule.violations(source)]
    assert not problems, f"{rule.id}:\n" + "\n".join(problems)


def test_heavy_libraries_are_imported_lazily() -> None:
    scanned = sources()
    assert len(scanned) > 20, [source.label for source in scanned]  # the scan found the package
    problems = [problem for source in scanned for problem in heavy_violations(source)]
    assert not problems, "import these inside the functions that use them:\n" + "\n".join(problems)


def test_the_lazy_imports_really_are_there() -> None:
    # The scan sees the runtimes' deferred imports, so the rule above is not passing vacuously.
    lazy = {
        (source.module, found.name)
        for source in sources()
        for found in source.imports
        if not found.eager and any(within(found.name, heavy) for heavy in HEAVY)
    }
    assert {
        ("modelyard.runtimes.onnx", "onnxruntime"),
        ("modelyard.runtimes.sklearn", "sklearn"),
        ("modelyard.runtimes.sklearn", "joblib"),
        ("modelyard.runtimes.torch", "torch"),
        ("modelyard.package.mlflow", "mlflow.pyfunc"),
    } <= lazy


def test_importing_every_module_loads_no_heavy_library() -> None:
    # The AST rule checks each file; this checks the whole import graph, third-party modules included.
    program = (
        "import importlib, json, pkgutil, sys\n"
        "import modelyard\n"
        "names = [m.name for m in pkgutil.walk_packages(modelyard.__path__, 'modelyard.')]\n"
        "for name in names:\n"
        "    if not name.endswith('__main__'):  # importing it runs the CLI\n"
        "        importlib.import_module(name)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'imported': ['modelyard', *names], 'heavy': heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert sorted(report["imported"]) == sorted(source.module for source in sources())
    assert report["heavy"] == [], f"importing modelyard loaded: {report['heavy']}"


SYNTHETIC = """\
from typing import TYPE_CHECKING
from modelyard import errors, serve
from ..protocols.http import error_response
import torch
if TYPE_CHECKING:
    import sklearn
    from modelyard.cli import main
def later() -> None:
    import onnxruntime
try:
    import joblib
except ImportError:
    joblib = None
lib = __import__("modelyard.server.app")
"""


def test_the_checker_catches_violations() -> None:
    known = frozenset(_m("errors", "serve", "protocols", "protocols.http", "cli", "cli.main", "app"))
    found = scan(SYNTHETIC, "modelyard.server.fake", is_package=False, known_modules=known)
    source = Source("src/modelyard/server/fake.py", "modelyard.server.fake", tuple(found))

    server_rule = next(rule for rule in RULES if rule.id == "server-never-imports-the-edge")
    problems = list(server_rule.violations(source))
    assert problems == [
        "src/modelyard/server/fake.py:2: `from modelyard import errors, serve` imports modelyard.server.serve",
        "src/modelyard/server/fake.py:3: `from ..protocols.http import error_response`"
        " imports modelyard.web.http",
        "src/modelyard/server/fake.py:7: `from modelyard.cli import main` imports modelyard.cli.main",
        "src/modelyard/server/fake.py:14: `__import__('modelyard.server.app')` imports modelyard.server.app",
    ]
    sdk_rule = next(rule for rule in RULES if rule.id == "sdk-imports-only-sdk-errors-dtypes")
    assert [name for name in (i.name for i in found) if sdk_rule.breaks(name)] == [
        "modelyard.server.serve",
        "modelyard.web.http",
        "modelyard.cli.main",
        "modelyard.server.app",
    ]  # modelyard.errors is allowed

    # torch and joblib run at import time (a try block does not defer anything); the type-only
    # sklearn import and the import inside a function are fine.
    assert list(heavy_violations(source)) == [
        "src/modelyard/server/fake.py:4: `import torch` imports torch at import time",
        "src/modelyard/server/fake.py:11: `import joblib` imports joblib at import time",
    ]
    assert {i.name for i in found if not i.eager} == {"sklearn", "modelyard.cli.main", "onnxruntime"}


def test_the_registry_rules_tell_similar_names_apart() -> None:
    registry_rule = next(rule for rule in RULES if rule.id == "registry-never-imports-the-serving-edge")
    # modelyard.control.server is the registry's own module, not the model server modelyard.server.
    assert not registry_rule.breaks("modelyard.control.server")
    assert registry_rule.breaks("modelyard.server.settings")
    # The OIP and TF-Serving globs cover every such module; the shared HTTP helpers stay allowed.
    assert registry_rule.breaks("modelyard.server.protocols.oip_rest")
    assert registry_rule.breaks("modelyard.server.protocols.oip_new.sub")
    assert registry_rule.breaks("modelyard.server.protocols.tfserving_rest")
    assert not registry_rule.breaks("modelyard.web.http")
    # A function-level import counts: the registry's server may not borrow the model server's helpers.
    found = Import(
        "modelyard.server.serve", 43, "from modelyard.server.serve import bind_socket", eager=False
    )
    source = Source("src/modelyard/control/server.py", "modelyard.control.server", (found,))
    assert list(registry_rule.violations(source)) == [
        "src/modelyard/control/server.py:43: `from modelyard.server.serve import bind_socket`"
        " imports modelyard.server.serve"
    ]
    package_rule = next(rule for rule in RULES if rule.id == "package-never-imports-the-edge-or-the-registry")
    assert package_rule.breaks("modelyard.registry.core")
    assert not package_rule.breaks("modelyard.runtimes.loader")  # packages may load runtimes


def test_the_gateway_rules_allow_only_the_registry_storage() -> None:
    registry_rule = next(rule for rule in RULES if rule.id == "registry-never-imports-the-gateway")
    assert registry_rule.breaks("modelyard.routing.store")
    assert registry_rule.breaks("modelyard.control.app")
    assert not registry_rule.breaks("modelyard.control.db")
    gateway_rule = next(rule for rule in RULES if rule.id == "gateway-uses-only-the-registry-storage")
    for allowed in ("modelyard.control.db", "modelyard.control.settings", "modelyard.registry.schema"):
        assert not gateway_rule.breaks(allowed)
    assert gateway_rule.breaks("modelyard.registry")  # the package __init__ pulls in the client and core
    assert gateway_rule.breaks("modelyard.registry.core")
    assert gateway_rule.breaks("modelyard.registry.rest")
    assert gateway_rule.breaks("modelyard.control.app")
    assert not gateway_rule.breaks("modelyard.routing.table")
    assert not gateway_rule.breaks("modelyard.web.http")
