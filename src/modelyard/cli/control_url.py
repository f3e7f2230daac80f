"""Which control plane a command talks to: one rule for ``route``, ``registry``, ``deploy`` and
``serve`` (README.md, "Local or remote").

``--control-url URL``, else ``MODELYARD_CONTROL_URL``: that control plane (``modelyard up``,
``modelyard registry serve``) over HTTP. Neither: the local embedded database (``$MODELYARD_HOME``,
or ``MODELYARD_REGISTRY_DB``), opened by the command itself — except for ``modelyard deploy``, whose
replicas live in a running control plane: it says so and exits 2 (:func:`require_control_url`).

The older spellings still work and print a warning on stderr: ``--control-plane`` and ``--registry``
for ``--control-url``, ``MODELYARD_REGISTRY_URL`` for ``MODELYARD_CONTROL_URL`` (read only when the
new name is unset). The servers (``up``, ``registry serve``, ``gateway serve``) always open the
database: they are what a URL points at.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, NoReturn

import typer

from modelyard.cli.group import Group
from modelyard.errors import ModelyardError

__all__ = [
    "CONTROL_URL_ENV",
    "DEPRECATED_ENV",
    "DEPRECATED_FLAGS",
    "ControlUrl",
    "ControlUrlGroup",
    "fail",
    "one_line_errors",
    "require_control_url",
    "resolve_control_url",
]

CONTROL_URL_ENV = "MODELYARD_CONTROL_URL"
DEPRECATED_ENV = "MODELYARD_REGISTRY_URL"
DEPRECATED_FLAGS = ("--control-plane", "--registry")
FLAG = "--control-url"

ControlUrl = Annotated[
    str | None,
    typer.Option(
        FLAG,
        metavar="URL",
        show_default=False,
        help=f"control plane to talk to over HTTP (default: ${CONTROL_URL_ENV}, else the local database)",
    ),
]


def _warn(message: str) -> None:
    typer.echo(f"modelyard: {message}", err=True)


def resolve_control_url(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The control plane's URL: ``given`` (the flag), else ``$MODELYARD_CONTROL_URL``, else the
    deprecated ``$MODELYARD_REGISTRY_URL``; None (an empty value counts as unset): the local database."""
    if given and given.strip():
        return given.strip()
    env = os.environ if environ is None else environ
    if env.get(CONTROL_URL_ENV, "").strip():
        return env[CONTROL_URL_ENV].strip()
    old = env.get(DEPRECATED_ENV, "").strip()
    if old:
        _warn(f"{DEPRECATED_ENV} is deprecated: set {CONTROL_URL_ENV} instead")
        return old
    return None


def require_control_url(given: str | None, command: str) -> str:
    """:func:`resolve_control_url` for a command that needs a running control plane: none set is one
    line on stderr saying how to start and name one, and exit code 2."""
    url = resolve_control_url(given)
    if url is None:
        _missing(command)
    return url


def _missing(command: str) -> NoReturn:
    _warn(
        f"`modelyard {command}` needs a running control plane, and none is set: start one with "
        f"`modelyard up` (it prints its URL), then export {CONTROL_URL_ENV}=http://127.0.0.1:8090 "
        f"or pass {FLAG} URL"
    )
    raise typer.Exit(2)


class ControlUrlGroup(Group):
    """A command group that reads the deprecated flags as ``--control-url`` (with a warning) in the
    arguments of whatever command it runs, so no command has to declare them."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        return super().resolve_command(ctx, _renamed(args))


def _renamed(args: list[str]) -> list[str]:
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":  # what follows is arguments, never options
            return [*out, *args[index:]]
        name, sep, value = arg.partition("=")
        if name in DEPRECATED_FLAGS:
            _warn(f"{name} is deprecated: use {FLAG}")
            arg = f"{FLAG}{sep}{value}"
        out.append(arg)
    return out


def fail(exc: BaseException, url: str | None) -> NoReturn:
    """``exc`` as one line on stderr (what went wrong, and where), then exit code 2."""
    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, ModelyardError):
        message = exc.message
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, httpx.HTTPError):
            message = f"cannot reach the control plane at {url}: {reason} (is `modelyard up` running?)"
        elif isinstance(exc, SQLAlchemyError):
            message = f"control-plane database error: {reason}"
        else:
            message = reason
    _warn(message)
    raise typer.Exit(2)


@contextlib.contextmanager
def one_line_errors(url: str | None) -> Iterator[None]:
    """Inside: a domain, HTTP, database or OS error ends the command through :func:`fail`."""
    import httpx
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (ModelyardError, httpx.HTTPError, SQLAlchemyError, OSError) as exc:
        fail(exc, url)
