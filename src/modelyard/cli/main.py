"""``modelyard serve``: serve model files (or ``file.py:Class``) with no code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from modelyard import __version__
from modelyard.cli import exposure
from modelyard.cli import package as package_commands
from modelyard.cli.control_url import ControlUrl, ControlUrlGroup, resolve_control_url
from modelyard.cli.deploy import deploy_app
from modelyard.cli.gateway import gateway_app
from modelyard.cli.key import key_app
from modelyard.cli.registry import registry_app, registry_error_message, registry_errors
from modelyard.cli.route import route_app
from modelyard.cli.token import token_app
from modelyard.cli.validate import validate
from modelyard.errors import ModelyardError

if TYPE_CHECKING:
    from modelyard.server.settings import Settings

__all__ = ["app", "main"]


def _flags_show_no_value() -> None:
    """Help lists a boolean flag as ``--isolated``, not ``--isolated <bool>`` (``--help`` too).

    Recent typer's rich help prints a type after every option, flags included, as if they took a
    value (its plain-text help does not). Flags and counters show none here; options that take a
    value are untouched, and a typer without this hook is left alone. tests/cli/test_help.py
    checks the help of every command.
    """
    original = getattr(typer.core.TyperOption, "display_type_rich", None)
    if original is None:
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        shown: str | None = original(self, ctx)
        return shown

    setattr(typer.core.TyperOption, "display_type_rich", display_type_rich)  # noqa: B010


_flags_show_no_value()
app = typer.Typer(
    help="modelyard: take a trained model to a production endpoint.",
    no_args_is_help=True,
    cls=ControlUrlGroup,  # the deprecated --control-plane / --registry, for every command below
)


@app.callback()
def _root() -> None:
    """modelyard command line."""


package_commands.register(app)
app.add_typer(registry_app, name="registry")
app.add_typer(route_app, name="route")
app.add_typer(gateway_app, name="gateway")
app.add_typer(key_app, name="key")
app.add_typer(deploy_app, name="deploy")
app.add_typer(token_app, name="token")
app.command()(validate)


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="control-plane port (default 8090; 0 picks one)")] = None,
    gateway_host: Annotated[
        str, typer.Option(help="address the gateway binds (with --tls-cert it serves HTTPS too)")
    ] = "127.0.0.1",
    gateway_port: Annotated[int, typer.Option(help="gateway port (0 picks one)")] = 8000,
    gateway_workers: Annotated[int, typer.Option(help="gateway worker processes (0: one per core)")] = 0,
    gateway_admin_port: Annotated[
        int | None, typer.Option(help="gateway admin port: /metrics, /-/routing (default: none)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="the control plane's log level")] = "warning",
    kubernetes: Annotated[
        bool,
        typer.Option("--kubernetes", help="run versions in a Kubernetes cluster (server-side apply)"),
    ] = False,
    kubeconfig: Annotated[
        str | None,
        typer.Option(help="with --kubernetes: the kubeconfig (default $KUBECONFIG, ~/.kube/config)"),
    ] = None,
    namespace: Annotated[str, typer.Option(help="with --kubernetes: the namespace")] = "default",
    host: exposure.Host = None,
    auth: exposure.Auth = None,
    allowed_host: exposure.AllowedHosts = None,
    tls_cert: exposure.TlsCert = None,
    tls_key: exposure.TlsKey = None,
    allow_local_paths: Annotated[
        bool,
        typer.Option(
            "--allow-local-paths",
            help="let deploy files name model code by its path on this host (default: registry only)",
        ),
    ] = False,
    allow_env: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-env",
            metavar="NAME",
            help="let deploy files set this interpreter-control variable (PYTHONPATH, LD_*, ...)",
        ),
    ] = None,
) -> None:
    """The whole platform here: control plane (registry, routes, deploy API, replicas) + gateway.

    Replicas run on this machine, or with --kubernetes as Deployments in a cluster."""
    from modelyard.control.settings import ControlSettings
    from modelyard.control.up import kubernetes_target, run_up
    from modelyard.gateway.settings import GatewaySettings

    if not kubernetes and (kubeconfig is not None or namespace != "default"):
        raise typer.BadParameter(
            "--kubeconfig and --namespace go with --kubernetes", param_hint="--kubernetes"
        )
    factory = kubernetes_target(kubeconfig, namespace) if kubernetes else None
    exposed = exposure.exposure_overrides(host, auth, allowed_host, tls_cert, tls_key)
    control = ControlSettings.from_env(
        port=port, log_level=log_level, allow_local_paths=allow_local_paths, allowed_env=allow_env, **exposed
    )
    # One certificate for both: the control plane's and the gateway's listeners serve HTTPS alike.
    gateway = GatewaySettings(
        control=control,
        host=gateway_host,
        port=gateway_port,
        workers=gateway_workers,
        admin_port=gateway_admin_port,
        tls_cert=control.tls_cert,
        tls_key=control.tls_key,
    )
    try:
        run_up(control, gateway, target_factory=factory)
    except ModelyardError as exc:  # no kubeconfig, or a namespace Kubernetes refuses: one line
        if exc.field not in ("kubeconfig", "namespace"):
            raise
        typer.echo(f"modelyard up: {exc.message}", err=True)
        raise typer.Exit(2) from None


@app.command()
def version() -> None:
    """Print modelyard's version."""
    typer.echo(__version__)


@app.command()
def serve(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="model files, .modelyard packages, file.py:ClassName, or registry refs name@alias / name/3"
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file with server settings and a models list")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="model name (one path only); default: the file's stem")
    ] = None,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="model version (one path only)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind; 0 picks a free one (default 8080)")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="also serve OIP over gRPC on this port (0 picks one; needs the grpc extra)"),
    ] = None,
    grpc_max_message_mb: Annotated[
        float | None, typer.Option(help="largest gRPC message, in MiB (default 64)")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="adaptive batching limit for file models")
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="longest wait for batch-mates")] = None,
    intra_op_threads: Annotated[int | None, typer.Option(help="onnxruntime/torch threads per model")] = None,
    device: Annotated[
        str | None,
        typer.Option(
            envvar="MODELYARD_DEVICE",
            help="where model files run: cpu (default), cuda, cuda:N, tensorrt[:N] (ONNX), auto",
        ),
    ] = None,
    max_queue: Annotated[int | None, typer.Option(help="queued requests per model before 503")] = None,
    log_level: Annotated[str | None, typer.Option(help="uvicorn log level")] = None,
    drain_grace: Annotated[
        float | None,
        typer.Option(help="on SIGTERM, report not-ready and keep serving this many seconds (default 0)"),
    ] = None,
    health_interval: Annotated[
        float | None, typer.Option(help="seconds between polls of each model's health() hook (default 5)")
    ] = None,
    health_timeout: Annotated[
        float | None, typer.Option(help="a health() call slower than this counts as unhealthy (default 2)")
    ] = None,
    isolated: Annotated[
        bool, typer.Option("--isolated", help="run packages in a venv built from their pinned requirements")
    ] = False,
    announce: Annotated[
        str | None,
        typer.Option(help="register this replica for the gateway as project/model/version (heartbeats)"),
    ] = None,
    announce_url: Annotated[
        str | None, typer.Option(help="the URL gateways should use (default: the address served on)")
    ] = None,
    max_inflated_bytes: Annotated[
        int | None, typer.Option(help="a gzip/deflate body may inflate to this many bytes (default 8 MiB)")
    ] = None,
    model_control: Annotated[
        bool | None,
        typer.Option(
            "--model-control/--no-model-control",
            help="allow load/unload over /v2/repository (off by default; needs --model-control-token)",
        ),
    ] = None,
    model_control_token: Annotated[
        str | None,
        typer.Option(
            envvar="MODELYARD_MODEL_CONTROL_TOKEN",
            help="bearer token for load/unload (16+ characters; prefer the environment variable)",
        ),
    ] = None,
    control_url: ControlUrl = None,
) -> None:
    """Serve one or more models over the Open Inference Protocol and the TF-Serving REST API."""
    paths = paths or []
    if name is not None and len(paths) != 1:
        raise typer.BadParameter("--name applies to exactly one model path", param_hint="--name")
    if model_version is not None and len(paths) != 1:
        raise typer.BadParameter(
            "--model-version applies to exactly one model path", param_hint="--model-version"
        )
    overrides: dict[str, Any] = {
        "host": host, "port": port, "intra_op_threads": intra_op_threads, "device": device,
        "max_queue": max_queue, "log_level": log_level, "drain_grace_s": drain_grace,
        "health_interval_s": health_interval, "health_timeout_s": health_timeout,
        "default_max_batch_size": max_batch_size, "default_max_latency_ms": max_latency_ms,
        "max_inflated_bytes": max_inflated_bytes, "model_control": model_control,
        "model_control_token": model_control_token, "grpc_port": grpc_port,
        "grpc_max_message_bytes": None if grpc_max_message_mb is None else int(grpc_max_message_mb * 2**20),
    }  # fmt: skip
    settings = _settings(config, paths, name, model_version, overrides)
    control_url = resolve_control_url(control_url)  # registry refs and --announce both go there
    try:
        settings = _resolve_refs(settings, control_url)
    except Exception as exc:  # a registry that is down: one line, no traceback
        if not isinstance(exc, (ModelyardError, *registry_errors())):  # httpx, SQLAlchemy only now
            raise
        typer.echo(registry_error_message(exc, control_url), err=True)
        raise typer.Exit(2) from None
    try:
        if not settings.models:
            raise typer.BadParameter(
                "give at least one model path or a --config with models", param_hint="PATHS"
            )
        if isolated:
            from modelyard.package.environment import serve_isolated

            serve_isolated(settings)  # never returns: execs the server in the venv, or exits 2
        from modelyard.server.serve import run  # imported here so `modelyard version` stays instant

        run(settings, on_listening=_announcing(announce, announce_url, control_url, settings.host))
    except (ModelyardError, OSError) as exc:
        message = _user_error(exc)
        if message is None:
            raise
        typer.echo(message, err=True)
        raise typer.Exit(2) from None


def _user_error(exc: Exception) -> str | None:
    """The one line for an error the user can fix, or None for a bug, which keeps its traceback.

    A user's errors are modelyard's own (:class:`ModelyardError`: a bad path, package or option)
    and the system refusing a file the user named (an ``OSError`` that carries the file name).
    Anything else, a ``TypeError`` or ``AttributeError`` say, is a bug in modelyard or in the
    model's own code, and a one-line message would hide where it is.
    """
    if isinstance(exc, ModelyardError):
        return f"modelyard: {exc.message}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"modelyard: {exc.strerror or exc}: {exc.filename}"
    return None


def _announcing(target: str | None, url: str | None, control_url: str | None, host: str) -> Any:
    """The ``on_listening`` hook of ``--announce``: None without it; checked before serving starts."""
    if target is None:
        return None
    from modelyard.routing.announcer import Announcer, parse_target
    from modelyard.routing.table import check_replica_url

    names = parse_target(target)
    if url is not None:
        check_replica_url(url, "announce_url")
    elif host in ("0.0.0.0", "::"):
        raise typer.BadParameter(
            "serving on every address: say which one gateways should use", param_hint="--announce-url"
        )

    def start(served: str, ready: Any) -> Any:
        chosen = url or served
        api: Any
        if control_url:
            from modelyard.routing.client import RouteClient

            api = RouteClient(control_url)
        else:
            from modelyard.control.settings import ControlSettings
            from modelyard.routing.store import RouteStore

            api = RouteStore.open(ControlSettings.from_env())
        announcer = Announcer(api, names, chosen, ready)
        announcer.start()
        return announcer.stop

    return start


def _settings(
    config: Path | None, paths: list[str], name: str | None, version: str | None, overrides: dict[str, Any]
) -> Settings:
    import yaml
    from pydantic import ValidationError

    from modelyard.server.settings import ModelConfig, Settings

    data: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"cannot read {config}: {exc}", param_hint="--config") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{config} must hold a mapping of settings", param_hint="--config")
        data = loaded
    data.update({k: v for k, v in overrides.items() if v is not None})
    models = list(data.pop("models", []) or [])
    models += [ModelConfig(path=p, name=name, version=version).model_dump() for p in paths]
    try:
        return Settings(**data, models=models)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None


def _resolve_refs(settings: Settings, registry_url: str | None) -> Settings:
    """Replace registry references (``name@alias``, ``name/3``) by verified local copies.

    A path that exists is always a file; a bare ``name`` is never a reference (write
    ``name/latest``), so a mistyped file name still reads "not found" rather than a registry miss.
    """
    models = []
    for model in settings.models:
        if not _is_ref(model.path):
            models.append(model)
            continue
        from modelyard.registry.fetch import fetch_version

        path, found = fetch_version(model.path, registry_url=registry_url)
        models.append(
            model.model_copy(
                update={
                    "path": str(path),
                    "name": model.name or found.name,
                    "version": model.version or str(found.version),
                }
            )
        )
    return settings.model_copy(update={"models": models})


def _is_ref(text: str) -> bool:
    if ".py:" in text or Path(text).exists() or ("@" not in text and text.count("/") != 1):
        return False
    from modelyard.registry.refs import parse_ref

    try:
        parse_ref(text)
    except ModelyardError:  # e.g. models/x.onnx: a missing file, reported as such later
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """The ``modelyard`` script: run ``argv`` (default: ``sys.argv[1:]``) through :data:`app`."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["version"]:
        # Answered before typer builds the command tree and parses: it would coerce the command's
        # unset --help with pydantic (cli/group.py), which costs more than the rest of the command.
        typer.echo(__version__)
        return
    app(args=args)


if __name__ == "__main__":
    main()
