"""The import direction of the architecture (docs/architecture.md), checked two ways.

An AST scan of src/ checks what each module *writes*: every import counts, wherever it is written
(a function-level import or a ``TYPE_CHECKING`` import is still a dependency of the design; relative
imports are resolved, and ``from package import submodule`` counts as importing the submodule). And
subprocesses check what importing an entry point *loads*, lazy ``__init__`` re-exports included.

The planes, from the bottom up (a module may import what is below it, never what is above):

- ``errors``, ``dtypes``, ``_process``, ``_lazy``: import nothing of ours;
- ``sdk`` (the model author's API): only ``sdk``, ``errors``, ``dtypes``;
- ``web`` (HTTP helpers every plane's REST edge shares): only ``web`` and ``errors``;
- ``server`` core (everything but ``server.protocols``, ``server.app``, ``server.serve``): no edge, no
  runtimes or packages, no web framework; ``server.protocols`` (OIP, TF-Serving, probes) adapts it;
- ``runtimes``: never ``package``, the server's edge or ``web``; ``runtimes.formats`` imports nothing;
- ``package``: may load runtimes; never the registry, routing, the gateway, deploy, control or the
  server's edge;
- ``control.settings``, ``control.db`` (with ``migrations``): the control plane's foundation, which
  the registry, routing, deploy and gateway build on; they import none of those planes;
- ``registry``: may verify packages; never the model server, routing, the gateway, deploy, or
  control beyond its foundation; its core is transport-free;
- ``routing`` (the routing table): never the registry, the gateway, deploy, the serving plane, or
  control beyond its foundation; its core is transport-free;
- ``gateway`` (the data plane): never the registry, deploy, the serving plane, or control beyond its
  settings; its proxy core imports no web framework;
- ``deploy``: never the serving plane, the registry, the gateway, or control beyond its foundation;
  of validation only ``validation.evidence`` (the latency histogram's rules, which the replica gate
  shares with the rollout's gates); its core is transport-free;
- ``rollout``: only routing, deploy's spec and history, ``validation.evidence``, the control
  foundation and ``web`` (deploy reaches it through a protocol of its own, never an import);
- ``validation``: may run models (the server's runtime, packages, runtimes), fetch from the registry
  and read the inference log's records (``gateway.logs``); never the rest of the gateway, deploy,
  access, or control beyond its foundation;
- ``control.app``, ``control.server``, ``control.up`` compose the planes; only ``cli`` is above them;
- ``client``: only itself, ``errors``, ``dtypes``, ``_lazy`` (and the package root, for its version);
- no module imports torch, scikit-learn, onnxruntime, joblib or mlflow when it is imported.
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
GRPC = ("grpc", "google.protobuf")  # the optional `grpc` extra: loaded by the gRPC adapter alone
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


LEAVES = _m("errors", "dtypes", "_process", "_lazy", "_secrets")
FOUNDATION = _m("control.settings", "control.db", "control.migrations")
SERVER_EDGE = _m("server.protocols", "server.app", "server.serve")
SERVER_CORE = _m(
    "server.batcher", "server.dataplane", "server.health", "server.metrics", "server.repository",
    "server.runtime", "server.settings", "server.stacking", "server.types", "server.validation",
)  # fmt: skip
SERVING = _m("server", "sdk", "runtimes", "package")
COMPOSITION = _m("control.app", "control.server", "control.up", "cli")
# The registry modules that know nothing of HTTP: rest and uploads are its REST edge, client talks
# HTTP, and fetch and the package's __init__ offer both ways in.
REGISTRY_CORE = _m(
    "registry.core", "registry.schema", "registry.queries", "registry.aliases", "registry.store",
    "registry.refs", "registry.types", "registry.pages", "registry.files", "registry.packages",
    "registry.api", "registry.openapi",
)  # fmt: skip
# The routing table without its edges (rest: the REST API; client: talks to it; announcer: a replica's side).
ROUTING_CORE = _m(
    "routing.table",
    "routing.schema",
    "routing.store",
    "routing.api",
    "routing.discovery",
    "routing.route_file",
)
# The deploy plane's pure parts: the file, its diff, the plan against live state, manifests, history.
DEPLOY_CORE = _m(
    "deploy.spec", "deploy.file", "deploy.diff", "deploy.live", "deploy.apply", "deploy.service",
    "deploy.state", "deploy.schema", "deploy.backend", "deploy.targets.kubernetes.manifests",
)  # fmt: skip
# The rollout controller without its edges (rest: the REST API; client: talks to it).
ROLLOUT_CORE = _m("rollout.schema", "rollout.store", "rollout.gates", "rollout.plan", "rollout.controller")
# The gateway's request path without its edges: the front ends (app: ASGI, http1: raw HTTP/1.1), the
# replica client (upstream: httptools parses the answers) and the workers.
PROXY_CORE = _m(
    "gateway.balance", "gateway.router", "gateway.proxy", "gateway.exchange", "gateway.mirror",
    "gateway.logs", "gateway.service", "gateway.messages", "gateway.choice", "gateway.admission",
    "gateway.tablepoll", "gateway.metrics_publish", "gateway.own_endpoints",
)  # fmt: skip

RULES = [
    Rule("leaves-import-nothing-of-ours", LEAVES, allowed=()),
    Rule("sdk-imports-only-sdk-errors-dtypes", _m("sdk"), allowed=_m("sdk", "errors", "dtypes")),
    Rule("web-imports-only-web-and-errors", _m("web"), allowed=_m("web", "errors")),
    Rule(
        "the-server-core-has-no-edge",
        SERVER_CORE,
        forbidden=(*SERVER_EDGE, *_m("web", "runtimes", "package"), *COMPOSITION, *WEB),
    ),
    Rule(
        "server-protocols-never-import-runtimes-or-up",
        _m("server.protocols"),
        forbidden=_m("runtimes", "package", "server.app", "server.serve", *COMPOSITION),
    ),
    Rule("runtimes-formats-import-nothing", _m("runtimes.formats"), allowed=()),
    Rule(
        "runtimes-never-import-packages-or-the-edge",
        _m("runtimes"),
        forbidden=(*_m("package", "web"), *SERVER_EDGE, *COMPOSITION),
    ),
    Rule(
        "package-never-imports-the-planes-above",
        _m("package"),
        forbidden=(
            *_m("registry", "routing", "gateway", "deploy", "control", "web"),
            *SERVER_EDGE,
            *COMPOSITION,
        ),
    ),
    Rule(
        "the-control-foundation-imports-no-plane",
        FOUNDATION,
        forbidden=_m(
            "registry", "routing", "gateway", "deploy", "server", "sdk", "control.app", "control.up", "cli"
        ),
    ),
    Rule(
        "registry-imports-only-the-control-foundation",
        _m("registry"),
        forbidden=(*_m("server", "routing", "gateway", "deploy", "control"), *COMPOSITION),
        exempt=FOUNDATION,
    ),
    Rule("the-registry-core-is-transport-free", REGISTRY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "routing-never-imports-the-other-planes",
        _m("routing"),
        forbidden=(*SERVING, *_m("registry", "gateway", "deploy", "control", "rollout"), *COMPOSITION),
        exempt=FOUNDATION,
    ),
    Rule("the-routing-core-is-transport-free", ROUTING_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "gateway-never-imports-the-other-planes",
        _m("gateway"),
        forbidden=(*SERVING, *_m("registry", "deploy", "control"), *COMPOSITION),
        exempt=_m("control.settings"),
    ),
    Rule("the-proxy-core-has-no-web-framework", PROXY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "deploy-never-imports-the-other-planes",
        _m("deploy"),
        forbidden=(*SERVING, *_m("registry", "gateway", "control", "rollout", "validation"), *COMPOSITION),
        exempt=(*FOUNDATION, *_m("validation.evidence")),
    ),
    Rule("the-deploy-core-is-transport-free", DEPLOY_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "rollout-imports-only-routing-deploy-specs-evidence-and-the-foundation",
        _m("rollout"),
        allowed=(
            *FOUNDATION,
            *_m("rollout", "routing", "deploy.spec", "deploy.state", "deploy.schema"),
            *_m("validation.evidence", "web", "errors", "_lazy"),
        ),
    ),
    Rule("the-rollout-core-is-transport-free", ROLLOUT_CORE, forbidden=WEB + HTTP_CLIENTS),
    Rule(
        "access-imports-only-the-control-foundation-and-web",
        _m("access"),
        allowed=(*FOUNDATION, *_m("access", "web", "errors", "_lazy", "_secrets")),
    ),
    Rule(
        # Validation runs models in-process (the server's runtime, packages, the registry's fetch)
        # and reads the inference log's records; it never reaches into the data plane itself.
        "validation-never-imports-the-gateway-deploy-or-the-composition",
        _m("validation"),
        forbidden=(*_m("gateway", "deploy", "control", "access"), *COMPOSITION),
        exempt=(*FOUNDATION, *_m("gateway.logs")),
    ),
    Rule(
        "control-composes-but-never-imports-the-cli-or-the-model-server",
        _m("control"),
        forbidden=(*_m("cli", "server", "sdk", "runtimes"),),
    ),
    Rule(
        "client-imports-only-errors-and-dtypes",
        _m("client"),
        allowed=_m("client", "errors", "dtypes", "_lazy"),
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
from modelyard import errors
from modelyard.server import serve
from .protocols.oip_rest import oip_routes
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


def _rule(rule_id: str) -> Rule:
    return next(rule for rule in RULES if rule.id == rule_id)


def test_the_checker_catches_violations() -> None:
    known = frozenset(
        _m(
            "errors",
            "server",
            "server.serve",
            "server.protocols",
            "server.protocols.oip_rest",
            "cli",
            "cli.main",
        )
    )
    found = scan(SYNTHETIC, "modelyard.server.runtime", is_package=False, known_modules=known)
    source = Source("src/modelyard/server/runtime.py", "modelyard.server.runtime", tuple(found))

    problems = [line.removeprefix("src/modelyard/server/runtime.py:") for line in
                _rule("the-server-core-has-no-edge").violations(source)]  # fmt: skip
    assert problems == [
        "3: `from modelyard.server import serve` imports modelyard.server.serve",
        "4: `from .protocols.oip_rest import oip_routes` imports modelyard.server.protocols.oip_rest",
        "8: `from modelyard.cli import main` imports modelyard.cli.main",
        "15: `__import__('modelyard.server.app')` imports modelyard.server.app",
    ]
    sdk_rule = _rule("sdk-imports-only-sdk-errors-dtypes")
    assert [name for name in (i.name for i in found) if sdk_rule.breaks(name)] == [
        "modelyard.server.serve",
        "modelyard.server.protocols.oip_rest",
        "modelyard.cli.main",
        "modelyard.server.app",
    ]  # modelyard.errors is allowed

    # torch and joblib run at import time (a try block does not defer anything); the type-only
    # sklearn import and the import inside a function are fine.
    assert list(heavy_violations(source)) == [
        "src/modelyard/server/runtime.py:5: `import torch` imports torch at import time",
        "src/modelyard/server/runtime.py:12: `import joblib` imports joblib at import time",
    ]
    assert {i.name for i in found if not i.eager} == {"sklearn", "modelyard.cli.main", "onnxruntime"}


def test_the_rules_tell_similar_names_apart() -> None:
    server_core = _rule("the-server-core-has-no-edge")
    assert server_core.governs("modelyard.server.runtime")
    assert not server_core.governs("modelyard.server.protocols.probes")  # the edge may use the core
    assert server_core.breaks("modelyard.server.protocols.probes")
    assert not server_core.breaks("modelyard.server.settings")
    # control.server is the control plane's HTTP server, not the model server.
    control = _rule("control-composes-but-never-imports-the-cli-or-the-model-server")
    assert not control.breaks("modelyard.control.server")
    assert control.breaks("modelyard.server.settings")
    assert control.breaks("modelyard.cli.main")
    # A function-level import counts.
    found = Import("modelyard.server.serve", 43, "from modelyard.server.serve import announce", eager=False)
    source = Source("src/modelyard/control/server.py", "modelyard.control.server", (found,))
    assert list(control.violations(source)) == [
        "src/modelyard/control/server.py:43: `from modelyard.server.serve import announce`"
        " imports modelyard.server.serve"
    ]
    package_rule = _rule("package-never-imports-the-planes-above")
    assert package_rule.breaks("modelyard.registry.core")
    assert not package_rule.breaks("modelyard.runtimes.loader")  # packages may load runtimes
    assert _rule("runtimes-never-import-packages-or-the-edge").breaks("modelyard.package.cache")


def test_the_planes_may_use_only_the_control_foundation() -> None:
    for rule_id in ("registry-imports-only-the-control-foundation", "routing-never-imports-the-other-planes",
                    "deploy-never-imports-the-other-planes"):  # fmt: skip
        rule = _rule(rule_id)
        assert not rule.breaks("modelyard.control.db"), rule_id
        assert not rule.breaks("modelyard.control.settings"), rule_id
        assert rule.breaks("modelyard.control.app"), rule_id
        assert rule.breaks("modelyard.control"), rule_id  # the package itself is above them
    gateway = _rule("gateway-never-imports-the-other-planes")
    assert not gateway.breaks("modelyard.control.settings")
    assert gateway.breaks("modelyard.control.db")  # the gateway reads the table through routing
    assert gateway.breaks("modelyard.registry.core")
    assert gateway.breaks("modelyard.deploy.spec")
    assert gateway.breaks("modelyard.server.protocols.oip_rest")
    assert not gateway.breaks("modelyard.routing.table")
    assert not gateway.breaks("modelyard.web.http")
    assert _rule("routing-never-imports-the-other-planes").breaks("modelyard.gateway.service")
    validation = _rule("validation-never-imports-the-gateway-deploy-or-the-composition")
    assert not validation.breaks("modelyard.server.runtime")
    assert not validation.breaks("modelyard.registry.fetch")
    assert not validation.breaks("modelyard.control.db")
    assert not validation.breaks("modelyard.gateway.logs.record")
    assert validation.breaks("modelyard.gateway.proxy")
    assert validation.breaks("modelyard.deploy.spec")
    assert validation.breaks("modelyard.control.app")
    assert validation.breaks("modelyard.cli.main")
    deploy = _rule("deploy-never-imports-the-other-planes")
    assert not deploy.breaks("modelyard.validation.evidence")  # the histogram's rules, no analysis
    assert deploy.breaks("modelyard.validation.online")
    assert deploy.breaks("modelyard.validation")
    assert _rule("the-control-foundation-imports-no-plane").breaks("modelyard.registry.schema")


def _loaded(statement: str) -> list[str]:
    """The modules (ours and third-party top-level names) that running ``statement`` loads."""
    program = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _ours_within(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [name for name in loaded if any(within(name, prefix) for prefix in prefixes)]


@pytest.mark.parametrize(
    "entry",
    ["modelyard.gateway.workers", "modelyard.gateway.http1", "modelyard.gateway.app", "modelyard.gateway"],
)
def test_importing_the_gateway_loads_no_serving_plane(entry: str) -> None:
    loaded = _loaded(f"import {entry}")
    assert entry in loaded  # the import happened: the check is not vacuous
    forbidden = (*_m("server", "sdk", "runtimes", "package", "registry", "deploy", "control.app"), "numpy")
    assert _ours_within(loaded, (*forbidden, *GRPC)) == []


@pytest.mark.parametrize(
    "entry", ["modelyard", "modelyard.client", "modelyard.routing.table", "modelyard.sdk"]
)
def test_the_light_entry_points_load_no_web_framework_or_database(entry: str) -> None:
    loaded = _loaded(f"import {entry}")
    assert entry in loaded
    assert _ours_within(loaded, (*WEB, *GRPC, "fastapi", "sqlalchemy", "alembic")) == []


GRPC_ADAPTER = _m("server.protocols.oip_grpc*", "server.protocols.grpc_v2")


def test_only_the_grpc_adapter_imports_grpc_and_nothing_imports_it_eagerly() -> None:
    # grpcio is an optional extra: a server started without --grpc-port must run without it.
    outside = [source for source in sources() if not any(within(source.module, a) for a in GRPC_ADAPTER)]
    problems = [
        f"{source.label}:{found.line}: `{found.statement}`"
        for source in outside
        for found in source.imports
        if any(within(found.name, name) for name in GRPC)
        or (found.eager and any(within(found.name, a) for a in GRPC_ADAPTER))
    ]
    assert not problems, "grpc only in the gRPC adapter, and the adapter only lazily:\n" + "\n".join(problems)
    lazy = {(s.module, f.name) for s in sources() for f in s.imports if not f.eager}
    assert ("modelyard.server.serve", "modelyard.server.protocols.oip_grpc") in lazy  # not vacuous


_SERVE_AND_STOP = """\
import os, signal, sys
import modelyard.server.serve as serve
from modelyard.server import Settings
from tests import models
def stop(*args):
    os.kill(os.getpid(), signal.SIGTERM)
grpc_port = None if sys.argv[1] == "none" else 0
serve.announce = stop  # the gRPC line: stop once gRPC listens
serve.run(Settings(port=0, grpc_port=grpc_port, log_level="warning"), [models.Doubler],
          on_ready=stop if grpc_port is None else (lambda url: None))
print("grpc loaded:", "grpc" in sys.modules)
"""


@pytest.mark.parametrize(("grpc_port", "loaded"), [("none", False), ("0", True)])
def test_a_server_without_a_grpc_port_never_loads_grpc(grpc_port: str, loaded: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SERVE_AND_STOP, grpc_port],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"grpc loaded: {loaded}"


def test_the_lazy_reexports_still_resolve() -> None:
    # Each package's names load on first use: every one of them must really be there.
    loaded = _loaded(
        "import importlib\n"
        "for package in ('modelyard', 'modelyard.server', 'modelyard.registry', 'modelyard.deploy',\n"
        "                'modelyard.package', 'modelyard.runtimes', 'modelyard.gateway',\n"
        "                'modelyard.gateway.logs', 'modelyard.server.protocols'):\n"
        "    module = importlib.import_module(package)\n"
        "    for name in module.__all__:\n"
        "        assert getattr(module, name) is not None, (package, name)"
    )
    assert "modelyard.registry.core" in loaded
    assert "modelyard.gateway.logs.shipper" in loaded
